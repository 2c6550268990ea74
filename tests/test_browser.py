"""Rendering pages in a headless browser (render=True), end to end: a local site whose content
exists only once its scripts ran, and a decoy private host its scripts try to reach.

Needs Playwright and a Chromium; CI has both (elsewhere these tests are skipped without them).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from crawler import ConfigError, Crawler, Request, Response, Settings, Spider
from crawler.spider import load_spider_class
from crawler.store.sqlite import SQLiteStore
from crawler.testing import Replay
from crawler.tools.demo import DemoShop, catalogue
from crawler.tools.demo import serve as serve_demo
from tests.helpers import crawler_cli
from tests.sites import Decoy, ScriptSite, serve


def _missing() -> str | None:
    """What rendering lacks here, if anything."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (pip install -e '.[browser]')"
    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        return "chromium is not installed"
    return None


# In CI (CI=true) a missing browser fails these tests instead.
pytestmark = [
    pytest.mark.skipif(
        _missing() is not None and os.environ.get("CI") != "true", reason=str(_missing())
    ),
    pytest.mark.slow,  # a real Chromium
]


class Scripted(Spider):
    """Follows every link; items from item pages, the /list entries and the /scroll feed
    (scrolled through `response.page` until the feed ends)."""

    name = "scripted"
    render = True
    scope = "any"  # the decoy is in scope: the address guard is what keeps the browser out

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        path = "/" + response.url.split("/", 3)[3]
        if path.startswith("/item/"):
            yield {
                "title": response.css_first("h1").text(),
                "price": response.css_first(".price").text(),
            }
            return
        if path == "/scroll":
            page = response.page
            while not await page.locator("#end").count():
                shown = await page.locator(".entry").count()
                await page.mouse.wheel(0, 100_000)
                await page.wait_for_function(
                    f"document.querySelectorAll('.entry').length > {shown}"
                    " || document.getElementById('end')"
                )
            await response.update()
            yield {"feed": [p.text() for p in response.css("p.entry")]}
            return
        if path == "/list":
            yield {"entries": [a.text() for a in response.css("#entries a")]}
        for url in response.links():
            yield Request(url)


@pytest.fixture
async def shop() -> AsyncIterator[ScriptSite]:
    decoy = Decoy()
    await decoy.start()
    site = ScriptSite(decoy)
    runners: list[web.AppRunner] = []
    site.port = (await serve(site.handle, ["127.0.0.1"], runners))["127.0.0.1"]
    try:
        yield site
    finally:
        for runner in runners:
            await runner.cleanup()
        await decoy.stop()


def _spider(site: ScriptSite, cls: type[Spider] = Scripted, **attributes: Any) -> Spider:
    spider = cls()
    spider.start_urls = [f"http://127.0.0.1:{site.port}/"]
    for name, value in attributes.items():
        setattr(spider, name, value)
    return spider


def _settings(**overrides: Any) -> Settings:
    return Settings().merge(
        {"obey_robots": False, "render_wait": "#ready", "retry_backoff": 0, **overrides}
    )


def _items(path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as db:
        return [json.loads(row[0]) for row in db.execute("SELECT data FROM items ORDER BY id")]


async def _counters(path: Path) -> dict[str, int]:
    store = await SQLiteStore.open_readonly(path)
    try:
        return await store.counters()
    finally:
        await store.close()


async def test_rendered_pages_show_what_their_scripts_built(
    shop: ScriptSite, store_path: Path
) -> None:
    stats = await Crawler(
        _spider(shop), _settings(browser_concurrency=2), store_path=store_path
    ).run()

    assert stats.ended == "complete"
    assert stats.failed == 0
    assert (stats.rendered, stats.render_blocked) == (23, 3 * 23)
    items = _items(store_path)
    assert len(items) == 22
    titles = sorted(i["title"] for i in items if "title" in i)
    assert titles == sorted(f"Item {n}" for n in range(1, 21))
    assert {i["price"] for i in items if i.get("title") == "Item 3"} == {"4.50"}
    # the XHR list needed the server's cookie and the one a script set, both sent back
    (entries,) = [i["entries"] for i in items if "entries" in i]
    assert entries == [f"entry {n}" for n in range(1, 6)]
    (feed,) = [i["feed"] for i in items if "feed" in i]
    assert feed == [f"row {n}" for n in range(50)]
    # every page fetched once: the document the crawl fetched is the one the browser shows
    pages = {path: n for path, n in shop.hits.items() if not path.startswith(("/api", "/bounce"))}
    assert set(pages.values()) == {1}
    assert len(pages) == 23
    assert shop.hits["/bounce"] == 23  # fetched; its redirect to the decoy was refused
    assert shop.decoy.connections == 0

    counters = await _counters(store_path)
    assert counters["render:pages"] == 23
    # per page: the decoy's fetch and iframe, and /bounce (its redirect went to the decoy);
    # the WebSocket never reaches routing: the browser's refusing proxy stops it
    assert counters["render:blocked"] == 3 * 23
    assert counters["render:skipped"] == 23  # the decoy's image (block_resources)
    assert counters["render:requests"] == 1 + 5  # /api/entries, /api/feed 5 times
    report = await crawler_cli("stats", "--store", str(store_path), "--json", cwd=store_path.parent)
    assert json.loads(report[1])["rendered"] == {
        "pages": 23,
        "requests": 6,
        "blocked": 69,
        "skipped": 23,
        "failed": 0,
    }


async def test_the_browser_cookies_are_kept_with_the_crawl(
    shop: ScriptSite, store_path: Path
) -> None:
    class OnePage(Scripted):
        name = "one"

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}

    await Crawler(_spider(shop, OnePage), _settings(), store_path=store_path).run()
    with sqlite3.connect(store_path) as db:
        (jar,) = db.execute("SELECT cookies FROM sessions").fetchone()
    names = {cookie["name"]: cookie["value"] for cookie in json.loads(jar)}
    assert names == {"visitor": "v1", "seen": "yes"}  # the server's, and the script's


async def test_a_request_renders_only_when_asked(shop: ScriptSite, store_path: Path) -> None:
    class Mixed(Spider):
        name = "mixed"

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url, "links": len(response.links()), "page": bool(response.page)}
            if response.request.render is None:
                yield Request(response.url, render=True, dont_filter=True)

    await Crawler(_spider(shop, Mixed), _settings(), store_path=store_path).run()
    plain, rendered = _items(store_path)
    assert plain["links"] == 0
    assert not plain["page"]
    assert rendered["links"] == 22
    assert rendered["page"]
    assert shop.decoy.connections == 0


async def test_a_hung_page_fails_like_a_timeout_and_the_crawl_ends(
    shop: ScriptSite, store_path: Path
) -> None:
    spider = _spider(shop)
    spider.start_urls = [
        f"http://127.0.0.1:{shop.port}/hang",
        f"http://127.0.0.1:{shop.port}/item/1",
    ]
    crawler = Crawler(spider, _settings(request_timeout=2, max_retries=1), store_path=store_path)
    stats = await crawler.run()
    assert stats.ended == "complete"
    assert (stats.pages, stats.failed, stats.items) == (2, 1, 1)
    store = await SQLiteStore.open_readonly(store_path)
    try:
        (failure,) = [f async for f in store.failures()]
    finally:
        await store.close()
    assert (failure["error"], failure["attempts"]) == ("render", 2)
    assert "not ready within 2 s" in failure["message"]


async def test_blocked_resource_types_are_not_loaded(shop: ScriptSite, store_path: Path) -> None:
    stats = await Crawler(
        _spider(shop), _settings(block_resources="fetch,image", max_pages=1), store_path=store_path
    ).run()
    assert stats.pages == 1
    assert shop.hits["/bounce"] == 0  # the page's fetch() calls were not made
    counters = await _counters(store_path)
    assert counters == {"render:pages": 1, "render:skipped": 3, "render:blocked": 1}  # iframe
    assert shop.decoy.connections == 0


async def test_a_browser_that_cannot_start_is_a_one_line_error(
    shop: ScriptSite, store_path: Path
) -> None:
    crawler = Crawler(
        _spider(shop), _settings(browser_executable="/nonexistent/chromium"), store_path=store_path
    )
    with pytest.raises(ConfigError, match=r"cannot start the browser \(/nonexistent/chromium\)"):
        await crawler.run()
    # nothing was lost: the start page is queued again for the next run
    stats = await Crawler(_spider(shop), _settings(max_pages=1), store_path=store_path).run()
    assert (stats.pages, stats.failed, stats.done_total) == (1, 0, 1)


def test_settings_of_the_browser_are_checked() -> None:
    with pytest.raises(ConfigError, match="browser_concurrency"):
        Settings(browser_concurrency=0)
    with pytest.raises(ConfigError, match="'pictures' is not a resource type"):
        Settings().merge({"block_resources": "image,pictures"})
    with pytest.raises(ConfigError, match="render_wait"):
        Settings(render_wait=" ")
    assert Settings().merge({"block_resources": ""}).block_resources == ()


def test_response_page_is_none_unless_rendered() -> None:
    response = Response(
        url="http://example.com/",
        status=200,
        headers=httpx.Headers(),
        body=b"",
        request=Request("http://example.com/"),
    )
    assert response.page is None
    with pytest.raises(RuntimeError, match="rendered response"):
        asyncio.run(response.update())


SPIDER_FILE = """
from crawler import Request, Spider


class Scripted(Spider):
    name = "scripted"
    render = True
    custom_settings = {"render_wait": "#ready", "obey_robots": False}

    async def parse(self, response):
        if "/item/" in response.url:
            yield {"title": response.css_first("h1").text()}
        await response.page.mouse.wheel(0, 500)  # the live page is driven by every callback
        for url in response.links():
            yield Request(url)
"""


def _descendants(pid: int) -> set[int]:
    """The processes started by `pid`, and theirs (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


async def _exited(pids: set[int], seconds: float) -> set[int]:
    """Wait (on pidfds, no polling) until the processes `pids` are gone; those still running
    after `seconds`."""
    loop = asyncio.get_running_loop()
    waiting: dict[int, asyncio.Event] = {}
    fds = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue  # gone already
        fds.append(fd)
        event = waiting[pid] = asyncio.Event()
        loop.add_reader(fd, event.set)
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                for event in waiting.values():
                    await event.wait()
        return {pid for pid, event in waiting.items() if not event.is_set()}
    finally:
        for fd in fds:
            loop.remove_reader(fd)
            os.close(fd)


async def test_kill_9_mid_render_leaves_no_browser_and_resumes_exactly_once(
    shop: ScriptSite, tmp_path: Path
) -> None:
    (tmp_path / "scripted.py").write_text(SPIDER_FILE)
    args = [
        sys.executable,
        "-m",
        "crawler",
        "run",
        "scripted.py",
        "-a",
        f"start_urls=http://127.0.0.1:{shop.port}/",
        "-s",
        "browser_concurrency=2",
    ]
    rendering = asyncio.Event()
    shop.on_hit = lambda path: rendering.set() if shop.hits["/bounce"] >= 6 else None
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    ended = asyncio.create_task(proc.wait())
    reached = asyncio.create_task(rendering.wait())
    await asyncio.wait({ended, reached}, return_when=asyncio.FIRST_COMPLETED)
    reached.cancel()
    assert rendering.is_set(), "the crawl ended before it could be killed"
    browsers = _descendants(proc.pid)
    assert browsers, "no browser was running"
    proc.send_signal(signal.SIGKILL)
    await proc.communicate()
    shop.on_hit = None

    # Chromium exits once its pipe to Playwright closes: nothing is left behind
    assert await _exited(browsers, seconds=30) == set()

    again = await asyncio.create_subprocess_exec(
        *args, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await again.communicate()
    assert again.returncode == 0, stderr.decode()
    titles = [item["title"] for item in _items(tmp_path / "scripted.db") if "title" in item]
    assert sorted(titles) == sorted(f"Item {n}" for n in range(1, 21))  # each exactly once
    assert shop.decoy.connections == 0


def test_a_crawl_without_render_imports_no_browser_code(tmp_path: Path) -> None:
    script = """
import asyncio, sys
import httpx
from crawler import Crawler, Settings, Spider

class Plain(Spider):
    name = "plain"
    start_urls = ["http://example.com/"]

    async def parse(self, response):
        yield {"title": response.css_first("title").text()}

page = httpx.Response(200, html="<html><title>t</title></html>")
crawler = Crawler(
    Plain(),
    Settings(obey_robots=False),
    store_path="plain.db",
    transport=httpx.MockTransport(lambda request: page),
    resolver=lambda host: asyncio.sleep(0, ["93.184.215.14"]),
)
stats = asyncio.run(crawler.run())
assert stats.items == 1, stats
print(sorted(m for m in sys.modules if m.split(".")[0] in ("playwright", "greenlet", "pyee")))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


async def test_a_crashed_browser_fails_its_pages_and_another_one_takes_over(
    shop: ScriptSite, store_path: Path
) -> None:
    class Crashing(Scripted):
        crashed = False

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            if response.url.endswith("/item/3") and not Crashing.crashed:
                Crashing.crashed = True
                for pid in _descendants(os.getpid()):  # Chromium dies: a crash, not a close
                    with contextlib.suppress(OSError):
                        if Path(f"/proc/{pid}/comm").read_text().strip().startswith("chrom"):
                            os.kill(pid, signal.SIGKILL)
            async for output in super().parse(response):
                yield output

    stats = await Crawler(
        _spider(shop, Crashing), _settings(browser_concurrency=2), store_path=store_path
    ).run()
    assert Crashing.crashed
    assert stats.ended == "complete"
    assert stats.failed == 0  # pages caught in the crash were retried in the new browser
    titles = sorted(i["title"] for i in _items(store_path) if "title" in i)
    assert titles == sorted(f"Item {n}" for n in range(1, 21))
    assert shop.decoy.connections == 0


async def test_fetch_render_and_parse_show_the_rendered_page(
    shop: ScriptSite, tmp_path: Path
) -> None:
    start = f"http://127.0.0.1:{shop.port}/"
    code, out, err = await crawler_cli(
        "fetch", start, "--render", "-s", "render_wait=#ready", cwd=tmp_path
    )
    assert code == 0, err
    assert '<a href="/item/7">item 7</a>' in out
    code, out, err = await crawler_cli("fetch", start, cwd=tmp_path)
    assert code == 0, err
    assert "/item/7" not in out  # the links only exist once the page's scripts ran

    (tmp_path / "scripted.py").write_text(SPIDER_FILE)
    code, out, err = await crawler_cli(
        "parse", "scripted.py", f"{start}item/4", "--json", cwd=tmp_path
    )
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert {"type": "item", "page": f"{start}item/4", "item": {"title": "Item 4"}} in lines
    assert shop.decoy.connections == 0


def test_the_app_example_clicks_through_the_javascript_shop(tmp_path: Path) -> None:
    shop = DemoShop(books=45)  # three pages of books: "More books" is clicked twice
    spider = Path(__file__).parent.parent / "spiders" / "app.py"
    with serve_demo(shop) as base:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "crawler",
                "run",
                str(spider),
                "-a",
                f"start_urls={base}app/",
                "-o",
                "books.jsonl",
                "-q",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 0, result.stderr
    books = [json.loads(line) for line in (tmp_path / "books.jsonl").read_text().splitlines()]
    expected = {(b["title"], f"£{b['price']:.2f}") for b in catalogue(45)}
    assert {(b["title"], b["price"]) for b in books} == expected
    assert len(books) == 45
    assert shop.hits["GET /app/api/page-3.json"] == 1


async def test_rendering_without_playwright_is_a_one_line_error(
    shop: ScriptSite, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "playwright.async_api", None)  # as if not installed
    crawler = Crawler(_spider(shop), _settings(), store_path=store_path)
    with pytest.raises(ConfigError, match=r"needs Playwright: pip install 'crawler\[browser\]'"):
        await crawler.run()


async def test_a_page_that_crashes_while_loading_is_retried(
    shop: ScriptSite, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crawler.render.browser import Renderer

    load = Renderer._load
    crashed: list[str] = []

    async def crashing(self: Renderer, page: Any, document: Any) -> bytes:
        if document.url.endswith("/item/2") and not crashed:
            crashed.append(document.url)
            session = await page.context.new_cdp_session(page)
            await session.send("Page.navigate", {"url": "about:blank"})
            crash = asyncio.ensure_future(session.send("Page.crash"))
            with contextlib.suppress(Exception):
                await page.wait_for_event("crash", timeout=10_000)
            with contextlib.suppress(Exception):  # it fails, or never answers: the page is gone
                await asyncio.wait_for(crash, 1)
        return await load(self, page, document)

    monkeypatch.setattr(Renderer, "_load", crashing)
    spider = _spider(shop)
    spider.start_urls = [f"http://127.0.0.1:{shop.port}/item/{n}" for n in (1, 2, 3)]
    stats = await Crawler(spider, _settings(), store_path=store_path).run()
    assert crashed
    assert (stats.pages, stats.failed, stats.retried, stats.items) == (3, 0, 1, 3)


async def test_a_rendering_spider_replays_offline_from_its_recording(tmp_path: Path) -> None:
    app = Path(__file__).parent.parent / "spiders" / "app.py"
    shop = DemoShop(books=25)
    with serve_demo(shop) as base:
        code, _, err = await crawler_cli(
            "run",
            str(app),
            *("-a", f"start_urls={base}app/", "-s", "http_cache=true"),
            *("-s", f"http_cache_dir={tmp_path / 'recording'}", "-q"),
            cwd=tmp_path,
        )
        assert code == 0, err
    # the shop is gone: the pages, their scripts and their JSON come from the recording
    spider = load_spider_class(app)()
    async with Replay(spider, tmp_path / "recording") as replay:
        listing = await replay.parse(f"{base}app/")
        assert len(listing.requests) == 25  # "More books" clicked, in the replayed page
        book = await replay.parse(listing.requests[0], callback="parse_book")
    (item,) = book.items
    first = catalogue(25)[0]
    assert (item["title"], item["price"]) == (first["title"], f"£{first['price']:.2f}")


async def test_a_hosts_settings_can_render_its_pages(shop: ScriptSite, store_path: Path) -> None:
    class ByHost(Scripted):
        render = False
        host_settings = {"127.0.0.1": {"render": True}}

    stats = await Crawler(
        _spider(shop, ByHost), _settings(browser_concurrency=2), store_path=store_path
    ).run()
    assert stats.failed == 0
    assert stats.rendered == 23
