"""Rendering pages in a headless browser (render=True), end to end: a local site whose content
exists only once its scripts ran, and a decoy private host its scripts try to reach.

Needs Playwright and a Chromium; CI has both (elsewhere these tests are skipped without them).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from crawler import ConfigError, Crawler, Request, Response, Settings, Spider
from crawler.store.sqlite import SQLiteStore
from tests.sites import Decoy, ScriptSite, serve


def _missing() -> str | None:
    """What rendering lacks here, if anything."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (pip install -e '.[browser]')"
    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        return "chromium is not installed"
    return None


# In CI (CI=true) a missing browser fails these tests instead.
pytestmark = pytest.mark.skipif(
    _missing() is not None and os.environ.get("CI") != "true", reason=str(_missing())
)


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
