"""A bookshop to crawl without the internet: `python -m crawler demo` serves it on 127.0.0.1 and
crawls it. Its markup follows books.toscrape.com, so spiders written for that site work here.
The site is generated (deterministic for a given size); the server is the standard library's.

Beyond the catalogue, the shop has what real spiders log into and page through:

- `/login`: a form with a CSRF token (a hidden field that must match the `csrftoken` cookie the
  page sets); a POST with a known user (reader/secret, alice/wonderland, bob/builder) sets a
  `sessionid` cookie and redirects to the account;
- `/account/orders?page=N`: the signed-in user's orders, a table per page (10 rows), with a
  next link; without a session, a redirect to the login page;
- `POST /api/search`: a JSON API, `{"query": "...", "page": 1}` in, a page of matching books out
  (`results`, `page`, `pages`, `total`, `next_page`);
- `/app/`: the same shop as a JavaScript app (nothing in its HTML but scripts): the listing
  shows 20 books and a "More books" button that loads 20 more from `/app/api/page-N.json`; a
  book's page (`/app/book/<slug>/`) fills itself in from `/app/api/<slug>.json`.
"""

from __future__ import annotations

import contextlib
import html
import json
import random
import secrets
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, urlsplit

from ..models import Request, Response
from ..spider import Spider

CATEGORIES = ("travel", "mystery", "poetry", "history", "science", "fantasy")
RATINGS = ("One", "Two", "Three", "Four", "Five")
PER_PAGE = 20
ROBOTS_TXT = b"User-agent: *\nDisallow: /admin/\n"


def _page(title: str, body: str) -> bytes:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)} | Books to Scrape - Sandbox</title></head>"
        f'<body><div class="page_inner"><a href="/index.html">Books to Scrape</a>'
        f'<a href="/admin/">Admin</a><a href="/account/">My account</a>{body}</div></body></html>'
    ).encode()


def _listing(
    books: list[dict[str, Any]], page: int, pages: int, prefix: str, pager_prefix: str = ""
) -> str:
    pods = "".join(
        f'<li><article class="product_pod"><h3><a href="{prefix}{b["slug"]}/index.html"'
        f' title="{html.escape(b["title"])}">{html.escape(b["title"][:20])}</a></h3>'
        f'<p class="star-rating {b["rating"]}"></p>'
        f'<p class="price_color">£{b["price"]:.2f}</p></article></li>'
        for b in books
    )
    pager = f'<li class="current">Page {page} of {pages}</li>'
    if page > 1:
        previous = f"{pager_prefix}page-{page - 1}.html"
        pager = f'<li class="previous"><a href="{previous}">previous</a></li>{pager}'
    if page < pages:
        pager += f'<li class="next"><a href="{pager_prefix}page-{page + 1}.html">next</a></li>'
    return f'<ol class="row">{pods}</ol><ul class="pager">{pager}</ul>'


def catalogue(books: int = 100, seed: int = 7) -> list[dict[str, Any]]:
    """The shop's books (deterministic for a size and a seed)."""
    rnd = random.Random(seed)
    return [
        {
            "title": f"Book {i}: {rnd.choice(['The', 'A', 'Our'])} "
            f"{rnd.choice(['Silent', 'Lost', 'Red', 'Last'])} "
            f"{rnd.choice(['River', 'Garden', 'Empire', 'Letter'])}",
            "slug": f"book-{i}_{i}",
            "price": rnd.uniform(10, 60),
            "rating": rnd.choice(RATINGS),
            "stock": rnd.randint(0, 22),
            "category": CATEGORIES[i % len(CATEGORIES)],
            "upc": f"{rnd.getrandbits(64):016x}",
        }
        for i in range(1, books + 1)
    ]


def render_site(books: int = 100, seed: int = 7) -> dict[str, bytes]:
    """Every page of a shop with `books` books, by path."""
    shop = catalogue(books, seed)
    site: dict[str, bytes] = {"/robots.txt": ROBOTS_TXT}
    pages = max(1, -(-len(shop) // PER_PAGE))
    nav = "".join(
        f'<li><a href="/catalogue/category/books/{c}_{n}/index.html">{c.title()}</a></li>'
        for n, c in enumerate(CATEGORIES, 2)
    )
    for page in range(1, pages + 1):
        chunk = shop[(page - 1) * PER_PAGE : page * PER_PAGE]
        body = f'<ul class="nav">{nav}</ul>' + _listing(chunk, page, pages, "/catalogue/")
        site[f"/catalogue/page-{page}.html"] = _page(f"All products, page {page}", body)
    home = f'<ul class="nav">{nav}</ul>' + _listing(
        shop[:PER_PAGE], 1, pages, "/catalogue/", pager_prefix="catalogue/"
    )
    site["/index.html"] = site["/"] = _page("All products", home)
    for n, category in enumerate(CATEGORIES, 2):
        in_category = [b for b in shop if b["category"] == category]
        body = f"<h1>{category.title()}</h1>" + _listing(in_category, 1, 1, "../../../")
        site[f"/catalogue/category/books/{category}_{n}/index.html"] = _page(category, body)
    for b in shop:
        n = CATEGORIES.index(b["category"]) + 2
        stock = f"In stock ({b['stock']} available)" if b["stock"] else "Out of stock"
        body = (
            f'<ul class="breadcrumb"><li><a href="../../index.html">Home</a></li>'
            f'<li><a href="../category/books/{b["category"]}_{n}/index.html">'
            f"{b['category'].title()}</a></li>"
            f'<li class="active">{html.escape(b["title"])}</li></ul>'
            f'<div class="product_main"><h1>{html.escape(b["title"])}</h1>'
            f'<p class="price_color">£{b["price"]:.2f}</p>'
            f'<p class="instock availability">{stock}</p>'
            f'<p class="star-rating {b["rating"]}"></p></div>'
            f'<table class="table table-striped"><tr><th>UPC</th><td>{b["upc"]}</td></tr></table>'
        )
        site[f"/catalogue/{b['slug']}/index.html"] = _page(b["title"], body)
    site.update(_app(shop))
    return site


_APP_LISTING = """
const list = document.getElementById("books"), more = document.getElementById("more");
let next = 1;
function load() {
  return fetch("/app/api/page-" + next + ".json").then(r => r.json()).then(page => {
    for (const b of page.books) {
      list.insertAdjacentHTML("beforeend",
        `<li><a class="book" href="/app/book/${b.slug}/">${b.title}</a></li>`);
    }
    next = page.next;
    more.hidden = !next;
    document.body.dataset.ready = "yes";
  });
}
more.addEventListener("click", () => { more.hidden = true; load(); });
load();
"""
_APP_BOOK = """
const slug = location.pathname.split("/")[3];
fetch("/app/api/" + slug + ".json").then(r => r.json()).then(b => {
  document.getElementById("book").innerHTML =
    `<h1>${b.title}</h1><p class="price_color">£${b.price.toFixed(2)}</p>`;
  document.body.dataset.ready = "yes";
});
"""


def _app(shop: list[dict[str, Any]]) -> dict[str, bytes]:
    """The shop as a JavaScript app under /app/: HTML with scripts only, and its JSON."""
    site: dict[str, bytes] = {}
    shell = '<ul id="books"></ul><button id="more" hidden>More books</button>'
    site["/app/"] = _page("App", f"{shell}<script>{_APP_LISTING}</script>")
    pages = max(1, -(-len(shop) // PER_PAGE))
    for page in range(1, pages + 1):
        chunk = shop[(page - 1) * PER_PAGE : page * PER_PAGE]
        site[f"/app/api/page-{page}.json"] = json.dumps(
            {
                "books": [{"slug": b["slug"], "title": b["title"]} for b in chunk],
                "next": page + 1 if page < pages else None,
            }
        ).encode()
    for b in shop:
        site[f"/app/book/{b['slug']}/"] = _page(
            b["title"], f'<div id="book"></div><script>{_APP_BOOK}</script>'
        )
        site[f"/app/api/{b['slug']}.json"] = json.dumps(
            {"title": b["title"], "price": round(b["price"], 2)}
        ).encode()
    return site


#: Content types by file suffix (anything else is HTML).
_TYPES = {"txt": "text/plain", "json": "application/json"}
USERS = {"reader": "secret", "alice": "wonderland", "bob": "builder"}
ORDERS_PER_PAGE = 10
RESULTS_PER_PAGE = 10

#: A response: status, headers, body.
Reply = tuple[int, dict[str, str], bytes]


class DemoShop:
    """The shop and what it remembers: its pages, users' orders, sessions, and counts of what
    happened (`logins` per user, `hits` per path). Safe to use from the server's threads.
    `on_hit(path)` is called after each request (tests stop a crawl with it)."""

    def __init__(self, books: int = 100, orders: int = 60, seed: int = 7) -> None:
        self.pages = render_site(books, seed)
        rnd = random.Random(seed)
        self.books: list[dict[str, Any]] = [
            {
                "title": book["title"],
                "price": round(book["price"], 2),
                "url": f"/catalogue/{book['slug']}/index.html",
            }
            for book in catalogue(books, seed)
        ]
        self.orders = {
            user: [
                {
                    "order": f"{user[0].upper()}{n:05d}",
                    "date": f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}",
                    "book": rnd.choice(self.books)["title"] if self.books else "-",
                    "total": f"£{rnd.uniform(10, 120):.2f}",
                }
                for n in range(1, orders + 1)
            ]
            for user in USERS
        }
        self.sessions: dict[str, str] = {}
        self.logins: Counter[str] = Counter()
        self.hits: Counter[str] = Counter()
        self.on_hit: Callable[[str], None] | None = None
        self._lock = threading.Lock()

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        """The reply to one request (`headers` with lowercase names)."""
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query)
        cookies = SimpleCookie(headers.get("cookie", ""))
        with self._lock:
            self.hits[f"{method} {path}"] += 1
            if method == "GET" and path == "/login":
                reply = self._login_page(query.get("next", ["/account/"])[0])
            elif method == "POST" and path == "/login":
                reply = self._log_in(body, cookies)
            elif method == "GET" and path.startswith("/account/"):
                reply = self._account(path, query, cookies)
            elif method == "POST" and path == "/api/search":
                reply = self._search(headers, body)
            elif method in ("GET", "HEAD") and path in self.pages:
                kind = _TYPES.get(path.rsplit(".", 1)[-1], "text/html; charset=utf-8")
                reply = 200, {"Content-Type": kind}, self.pages[path]
            else:
                reply = 404, {"Content-Type": "text/html"}, b"<html><body>Not found</body></html>"
        if self.on_hit is not None:
            self.on_hit(f"{method} {path}")
        return reply

    def _login_page(self, next_path: str, error: str = "") -> Reply:
        token = secrets.token_hex(12)
        form = (
            f'<form id="login" action="/login?next={quote(next_path)}" method="post">'
            f'<input type="hidden" name="csrf_token" value="{token}">'
            '<label>Username <input name="username"></label>'
            '<label>Password <input type="password" name="password"></label>'
            '<label><input type="checkbox" name="remember" checked> Remember me</label>'
            '<input type="submit" value="Log in"></form>'
        )
        body = f'<p class="error">{html.escape(error)}</p>' if error else ""
        headers = {
            "Content-Type": "text/html; charset=utf-8",
            "Set-Cookie": f"csrftoken={token}; Path=/; SameSite=Lax",
        }
        return 200, headers, _page("Log in", f"<h1>Log in</h1>{body}{form}")

    def _log_in(self, body: bytes, cookies: SimpleCookie) -> Reply:
        form = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
        token = cookies["csrftoken"].value if "csrftoken" in cookies else None
        if not token or form.get("csrf_token") != token:
            return 403, {"Content-Type": "text/html"}, _page("Forbidden", "<h1>CSRF failed</h1>")
        user = form.get("username", "")
        if USERS.get(user) != form.get("password"):
            return self._login_page("/account/", "Invalid username or password")
        sid = secrets.token_hex(16)
        self.sessions[sid] = user
        self.logins[user] += 1
        headers = {
            "Location": "/account/orders?page=1",
            "Set-Cookie": f"sessionid={sid}; Path=/; HttpOnly; SameSite=Lax",
        }
        return 302, headers, b""

    def _account(self, path: str, query: dict[str, list[str]], cookies: SimpleCookie) -> Reply:
        user = self.sessions.get(cookies["sessionid"].value) if "sessionid" in cookies else None
        if user is None:
            return 302, {"Location": f"/login?next={quote(path)}"}, b""
        orders = self.orders[user]
        pages = max(1, -(-len(orders) // ORDERS_PER_PAGE))
        try:
            page = min(max(int(query.get("page", ["1"])[0]), 1), pages)
        except ValueError:
            page = 1
        chunk = orders[(page - 1) * ORDERS_PER_PAGE : page * ORDERS_PER_PAGE]
        rows = "".join(
            f"<tr><td>{o['order']}</td><td>{o['date']}</td><td>{html.escape(o['book'])}</td>"
            f"<td>{o['total']}</td></tr>"
            for o in chunk
        )
        table = (
            '<table id="orders"><tr><th>Order</th><th>Date</th><th>Book</th><th>Total</th></tr>'
            f"{rows}</table>"
        )
        pager = f'<li class="current">Page {page} of {pages}</li>'
        if page < pages:
            pager += f'<li class="next"><a href="/account/orders?page={page + 1}">next</a></li>'
        body = f'<p class="user">Signed in as {user}</p>{table}<ul class="pager">{pager}</ul>'
        return 200, {"Content-Type": "text/html; charset=utf-8"}, _page("Your orders", body)

    def _search(self, headers: dict[str, str], body: bytes) -> Reply:
        json_type = {"Content-Type": "application/json"}
        if not headers.get("content-type", "").startswith("application/json"):
            return 415, json_type, b'{"error": "send JSON"}'
        try:
            asked = json.loads(body)
            query, page = str(asked.get("query", "")).lower(), int(asked.get("page", 1))
        except (ValueError, AttributeError, TypeError):
            error = {"error": 'expected {"query": "...", "page": 1}'}
            return 400, json_type, json.dumps(error).encode()
        found = [book for book in self.books if query in book["title"].lower()]
        pages = max(1, -(-len(found) // RESULTS_PER_PAGE))
        page = min(max(page, 1), pages)
        answer = {
            "query": query,
            "page": page,
            "pages": pages,
            "total": len(found),
            "results": found[(page - 1) * RESULTS_PER_PAGE : page * RESULTS_PER_PAGE],
            "next_page": page + 1 if page < pages else None,
        }
        return 200, json_type, json.dumps(answer).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes
    shop: ClassVar[DemoShop]

    def _reply(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, reply_headers, content = self.shop.handle(method, self.path, headers, body)
        self.send_response(status)
        for name, value in reply_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(content)

    def do_GET(self) -> None:
        self._reply("GET")

    def do_HEAD(self) -> None:
        self._reply("HEAD")

    def do_POST(self) -> None:
        self._reply("POST")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(shop: DemoShop, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve the shop over HTTP in a background thread; yields its base URL."""
    handler = type("Handler", (_Handler,), {"shop": shop})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="demo-site", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class DemoSpider(Spider):
    """Follows every link of the demo shop and yields one item per book page."""

    name = "demo"

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        main = response.css_first("div.product_main")
        if main is not None:
            title = main.css_first("h1")
            price = main.css_first("p.price_color")
            yield {
                "url": response.url,
                "title": title.text() if title else None,
                "price": price.text() if price else None,
            }
        for url in response.links():
            yield Request(url)
