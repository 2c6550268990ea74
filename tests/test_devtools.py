"""The spider author's loop: `fetch` and `parse`, in-process on mock transports and as users run
them against the local demo shop."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crawler import ConfigError, Crawler, CrawlerError, Request, Response, Retry, Settings, Spider
from tests.helpers import html, public_resolver
from tests.test_cli import cli

SPIDERS = Path(__file__).parent.parent / "spiders"


class Signed(Spider):
    name = "signed"
    start_urls = ["http://a.com/"]

    def process_request(self, request: Request) -> Request:
        request.headers = {**(request.headers or {}), "Authorization": "Bearer x"}
        return request

    def process_response(self, request: Request, response: Response) -> None:
        if "captcha" in response.text:
            raise Retry("ban page")

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"title": response.css_first("title").text(), "meta": response.request.meta}
        for url in response.links():
            yield Request(url)


def requester(handler: Any, spider: Spider | None = None, **settings: Any) -> Any:
    crawler = Crawler(
        spider or Signed(),
        Settings().merge(settings),
        transport=httpx.MockTransport(handler),
        resolver=public_resolver,
    )
    return crawler.requester(["http://a.com/"])


async def test_fetch_goes_through_hooks_and_robots_and_returns_any_status(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.path} {request.headers.get('authorization')}")
        if request.url.path == "/robots.txt":
            return httpx.Response(200, text="User-agent: *\nDisallow: /private\n")
        if request.url.path == "/missing":
            return httpx.Response(404, html="<title>gone</title>")
        return html("<title>t</title> captcha")

    async with requester(handler) as r:
        assert (await r.fetch("http://a.com/missing")).status == 404
        response = await r.fetch("http://a.com/page")
        assert response.status == 200
        with pytest.raises(CrawlerError, match=r"disallowed by robots\.txt"):
            await r.fetch("http://a.com/private")
        with pytest.raises(ConfigError, match=r"cannot fetch 'a\.com/x'"):
            await r.fetch("a.com/x")
    assert seen == ["/robots.txt None", "/missing Bearer x", "/page Bearer x"]
    assert "asks for a retry of http://a.com/page: ban page" in caplog.text


async def test_run_a_callback_keeps_what_it_yields_apart() -> None:
    async with requester(
        lambda r: html('<title>t</title><a href="/b">b</a>'), obey_robots=False
    ) as r:
        response = await r.fetch(Request("http://a.com/", meta={"k": 1}))
        items, requests, _ = await r.run(r.callback(None, response.request), response)
    assert items == [{"title": "t", "meta": {"k": 1}}]
    assert [(q.url, q.callback_name, q.depth) for q in requests] == [("http://a.com/b", "parse", 1)]


class Mover(Signed):
    def process_request(self, request: Request) -> Request:
        request.url = "http://b.com/elsewhere"
        return request


async def test_a_hook_may_not_move_a_request_to_another_host_here_either() -> None:
    """The one-page tools run the crawl's own checks: a hook moving a request off its host
    fails the page in a crawl (politeness is per host), and here too."""
    fetched: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        return html("<title>t</title>")

    async with requester(handler, Mover(), obey_robots=False) as r:
        with pytest.raises(CrawlerError, match="within its host only"):
            await r.fetch("http://a.com/page")
    assert fetched == []


@pytest.fixture(scope="module")
def shop() -> Iterator[str]:
    from crawler.tools.demo import DemoShop, serve

    with serve(DemoShop(25)) as base:
        yield base


def test_fetch_command(shop: str, tmp_path: Path) -> None:
    result = cli("fetch", shop, "--headers", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "<title>" in result.stdout
    assert result.stderr.startswith(f"200 {shop} (")
    assert "content-type: text/html" in result.stderr
    result = cli("fetch", f"{shop}catalogue/page-1.html", "-o", "page.html", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "book-1_1" in (tmp_path / "page.html").read_text()
    missing = cli("fetch", f"{shop}nope", cwd=tmp_path)
    assert missing.returncode == 0  # like curl: an error status is still an answer
    assert missing.stderr.startswith("404 ")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("fetch", "example.com/x"), 2, "cannot fetch 'example.com/x'"),
        (("fetch", "http://127.0.0.1:9/"), 1, "error: "),
        (("parse", "books.py", "{shop}", "--callback", "nope"), 2, "no callback method 'nope'"),
        (("parse", "books.py", "{shop}", "--meta", "{oops"), 2, "--meta must be a JSON object"),
        (("parse", "books.py", "{shop}", "--meta", "[1]"), 2, "got list"),
        (("parse", "books.py", "{shop}", "--depth", "-1"), 2, "--depth takes"),
        (("parse", "missing.py", "{shop}"), 2, "spider file not found"),
    ],
)
def test_mistakes_are_one_line_errors(
    shop: str, tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    (tmp_path / "books.py").write_text((SPIDERS / "books.py").read_text())
    result = cli(*(a.replace("{shop}", shop) for a in args), cwd=tmp_path)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_parse_prints_items_and_requests(shop: str, tmp_path: Path) -> None:
    books = str(SPIDERS / "books.py")
    result = cli("parse", books, f"{shop}catalogue/page-1.html", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"200 {shop}catalogue/page-1.html (depth 0, parse)"
    assert f"  request GET {shop}catalogue/book-1_1/index.html -> parse_book" in lines
    book = f"{shop}catalogue/book-3_3/index.html"
    result = cli("parse", books, book, "-c", "parse_book", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["type"] == "item"
    assert record["page"] == book
    assert record["item"]["title"].startswith("Book 3")


def test_parse_follows_what_it_yields_to_a_depth(shop: str, tmp_path: Path) -> None:
    books = str(SPIDERS / "books.py")
    args = ("parse", books, f"{shop}catalogue/page-1.html", "--depth", "1", "--json")
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    items = [r["item"] for r in records if r["type"] == "item"]
    assert len(items) == 20  # the books of page 1
    assert {r["callback"] for r in records if r["type"] == "request"} == {"parse_book", "parse"}
    assert not (tmp_path / "books.db").exists()  # nothing stored


def test_parse_runs_the_pipelines_when_asked(shop: str, tmp_path: Path) -> None:
    book = f"{shop}catalogue/book-3_3/index.html"
    shop_spider = str(SPIDERS / "shop.py")
    raw = cli("parse", shop_spider, book, "-c", "parse_book", "--json", cwd=tmp_path)
    piped = cli(
        "parse", shop_spider, book, "-c", "parse_book", "--json", "--pipelines", cwd=tmp_path
    )
    assert raw.returncode == piped.returncode == 0, raw.stderr + piped.stderr
    (before,) = [json.loads(line)["item"] for line in raw.stdout.splitlines()]
    (after,) = [json.loads(line)["item"] for line in piped.stdout.splitlines()]
    assert isinstance(before["price"], str)
    assert isinstance(after["price"], float)
    assert after["upc"] == before["upc"]


def test_shell_runs_statements_with_top_level_await(shop: str, tmp_path: Path) -> None:
    book = f"{shop}catalogue/book-3_3/index.html"
    script = "\n".join(
        [
            "print('status', response.status, len(response.css('article.product_pod')))",
            f"page = await fetch({book!r})",
            "print('same', page is response, request.url)",
            "print('title', response.xpath('//h1/text()').get())",
            "1 / 0",
            "print('viewed', response.text.split('<head>')[1] in open(view()).read())",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-m", "crawler", "shell", f"{shop}catalogue/page-1.html"],
        input=script + "\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "status 200 20" in out
    assert f"same True {book}" in out
    assert "title Book 3" in out
    assert "viewed True" in out  # an error in one statement does not end the shell
    assert "ZeroDivisionError" in result.stderr
    assert "During handling" not in result.stderr


def test_shell_without_a_url_and_with_a_bad_one(shop: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "crawler", "shell"],
        input=f"print(response)\npage = fetch({shop!r})\nprint(page.status, page is response)\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "None" in result.stdout
    assert "200 True" in result.stdout  # without await, fetch() fetches all the same
    assert "never awaited" not in result.stderr
    bad = cli("shell", "example.com/x", cwd=tmp_path)
    assert bad.returncode == 2
    assert "cannot fetch 'example.com/x'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_a_callback_error_in_parse_shows_its_traceback(shop: str, tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text(
        "from crawler import Spider\n"
        "class Broken(Spider):\n"
        "    name = 'broken'\n"
        "    async def parse(self, response):\n"
        "        yield {'n': 1 / 0}\n"
    )
    result = cli("parse", "broken.py", shop, cwd=tmp_path)
    assert result.returncode == 1
    assert 'broken.py", line 5, in parse' in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "parse() raised ZeroDivisionError" in result.stderr


def test_the_shell_edits_lines_and_keeps_a_history(tmp_path: Path) -> None:
    """On a terminal, the plain console has readline: the up arrow brings the last line back
    (instead of printing ^[[A), and the lines are kept in ~/.crawler_history."""
    import os
    import pty
    import select

    leader, follower = pty.openpty()
    env = {**os.environ, "HOME": str(tmp_path), "TERM": "xterm"}
    shell = subprocess.Popen(
        [sys.executable, "-m", "crawler", "shell"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
    )
    os.close(follower)
    seen = b""

    def until(text: bytes, count: int = 1) -> None:
        nonlocal seen
        while seen.count(text) < count:
            ready, _, _ = select.select([leader], [], [], 60)
            assert ready, f"no {text!r} from the shell; it printed {seen!r}"
            seen += os.read(leader, 4096)

    try:
        until(b">>> ")
        os.write(leader, b"6 * 7\r")
        until(b"42")
        until(b">>> ", 2)
        os.write(leader, b"\x1b[A\r")  # up arrow, Enter: the same line again
        until(b"6 * 7", 2)  # the line brought back
        until(b"42", 2)  # and run again
        until(b">>> ", 3)
        os.write(leader, b"\x04")  # Ctrl-D
        assert shell.wait(60) == 0
    finally:
        shell.kill()
        shell.wait()
        os.close(leader)
    assert b"^[[A" not in seen
    assert "6 * 7" in (tmp_path / ".crawler_history").read_text()
