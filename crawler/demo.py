"""A bookshop to crawl without the internet: `python -m crawler demo` serves it on 127.0.0.1 and
crawls it. Its markup follows books.toscrape.com, so spiders written for that site work here.
The site is generated (deterministic for a given size); the server is the standard library's.
"""

from __future__ import annotations

import contextlib
import html
import random
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from .models import Request, Response
from .spider import Spider

CATEGORIES = ("travel", "mystery", "poetry", "history", "science", "fantasy")
RATINGS = ("One", "Two", "Three", "Four", "Five")
PER_PAGE = 20
ROBOTS_TXT = b"User-agent: *\nDisallow: /admin/\n"


def _page(title: str, body: str) -> bytes:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)} | Books to Scrape - Sandbox</title></head>"
        f'<body><div class="page_inner"><a href="/index.html">Books to Scrape</a>'
        f'<a href="/admin/">Admin</a>{body}</div></body></html>'
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


def render_site(books: int = 100, seed: int = 7) -> dict[str, bytes]:
    """Every page of a shop with `books` books, by path."""
    rnd = random.Random(seed)
    shop: list[dict[str, Any]] = [
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
    return site


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes
    site: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        body = self.site.get(path)
        status = 200 if body is not None else 404
        body = body if body is not None else b"<html><body>Not found</body></html>"
        kind = "text/plain" if path.endswith(".txt") else "text/html; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(site: dict[str, bytes], host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `site` over HTTP in a background thread; yields its base URL."""
    handler = type("Handler", (_Handler,), {"site": site})
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
