"""Revisiting: `run --revisit AGE` fetches done pages again with conditional requests. A 304
keeps the page's items without running its callback; a changed page replaces them; a page
gone (404/410) takes them away. Against a local server that honours If-None-Match and
If-Modified-Since, counting what it is asked."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from crawler import Crawler, Request, Response, Settings, Spider
from crawler.store import SQLiteStore
from tests.sites import serve
from tests.test_cli import acli, cli

PAGES = 100
MODIFIED = "Wed, 21 Oct 2026 07:28:00 GMT"


class VersionedSite:
    """/p/0 links to /p/1../p/99; every page has a version (its ETag); pages in `gone` 404."""

    def __init__(self) -> None:
        self.versions = dict.fromkeys(range(PAGES), 1)
        self.gone: set[int] = set()
        self.requests: Counter[str] = Counter()  # "plain" or "conditional"
        self.statuses: Counter[int] = Counter()
        self._runners: list[web.AppRunner] = []
        self.base = ""

    async def start(self) -> None:
        ports = await serve(self._handle, ["127.0.0.2"], self._runners)
        self.base = f"http://127.0.0.2:{ports['127.0.0.2']}/"

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/robots.txt":
            return web.Response(status=404)
        if request.path == "/sitemap.xml":
            self.requests["sitemap"] += 1
            return web.Response(text=self._sitemap(), content_type="application/xml")
        n = int(request.path.rsplit("/", 1)[1])
        conditional = "If-None-Match" in request.headers or "If-Modified-Since" in request.headers
        self.requests["conditional" if conditional else "plain"] += 1
        response = self._page(n, request)
        self.statuses[response.status] += 1
        return response

    def _sitemap(self) -> str:
        """Pages 1..99, each last modified in 2020, but the ones whose version changed."""
        entries = "".join(
            f"<url><loc>{self.base}p/{n}</loc><lastmod>"
            f"{'2020-01-01' if self.versions[n] == 1 else '2099-01-01'}</lastmod></url>"
            for n in range(1, PAGES)
        )
        return f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'

    def _page(self, n: int, request: web.Request) -> web.Response:
        if n in self.gone:
            return web.Response(status=404)
        etag = f'"v{self.versions[n]}"'
        headers = {"ETag": etag, "Last-Modified": MODIFIED}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        links = "".join(f'<a href="/p/{i}">{i}</a>' for i in range(1, PAGES)) if n == 0 else ""
        body = f"<title>page {n} v{self.versions[n]}</title>{links}"
        return web.Response(text=body, content_type="text/html", headers=headers)


@pytest.fixture
async def site() -> AsyncIterator[VersionedSite]:
    site = VersionedSite()
    await site.start()
    yield site
    await site.stop()


class Pages(Spider):
    name = "pages"
    parsed = 0

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        type(self).parsed += 1
        yield {"url": response.url, "title": response.css_first("title").text()}
        for url in response.links():
            yield Request(url)


async def crawl(site: VersionedSite, store: Path, revisit: float | None = None) -> Any:
    Pages.parsed = 0
    spider = Pages(start_urls=site.base + "p/0")
    options = Settings(concurrency=8, per_domain_concurrency=4)
    return await Crawler(spider, options, store_path=store, revisit=revisit).run()


async def titles(store: Path) -> dict[str, str]:
    reader = await SQLiteStore.open_readonly(store)
    try:
        items = [json.loads(text) async for text in reader.items()]
    finally:
        await reader.close()
    assert len({i["url"] for i in items}) == len(items)  # one item per page, always
    return {i["url"].rsplit("/", 1)[1]: i["title"] for i in items}


async def test_an_unchanged_site_answers_every_revisit_with_304(
    site: VersionedSite, tmp_path: Path
) -> None:
    store = tmp_path / "pages.db"
    await crawl(site, store)
    before = await titles(store)
    assert len(before) == PAGES
    site.requests.clear()
    site.statuses.clear()
    stats = await crawl(site, store, revisit=0)
    assert site.requests == {"conditional": PAGES}
    assert site.statuses == {304: PAGES}
    assert Pages.parsed == 0  # no callback ran
    assert (stats.unchanged, stats.changed, stats.gone) == (PAGES, 0, 0)
    assert await titles(store) == before


async def test_a_changed_page_is_picked_up_and_a_gone_one_removed(
    site: VersionedSite, tmp_path: Path
) -> None:
    store = tmp_path / "pages.db"
    await crawl(site, store)
    site.versions[7] = 2
    site.gone.add(9)
    stats = await crawl(site, store, revisit=0)
    assert (stats.unchanged, stats.changed, stats.gone) == (PAGES - 2, 1, 1)
    assert Pages.parsed == 1
    after = await titles(store)
    assert after["7"] == "page 7 v2"
    assert "9" not in after
    assert len(after) == PAGES - 1
    reader = await SQLiteStore.open_readonly(store)
    try:
        summary = await reader.summary()
    finally:
        await reader.close()
    assert summary.counts.items == PAGES - 1
    assert summary.counters["revisit:changed"] == 1


async def test_only_pages_older_than_the_age_are_revisited(
    site: VersionedSite, tmp_path: Path
) -> None:
    store = tmp_path / "pages.db"
    await crawl(site, store)
    site.requests.clear()
    stats = await crawl(site, store, revisit=3600)  # all done just now: nothing to do
    assert stats.ended == "already complete"
    assert site.requests == {}


async def test_revisit_from_the_command_line(site: VersionedSite, tmp_path: Path) -> None:
    (tmp_path / "pages.py").write_text(
        "from crawler import Request, Spider\n"
        "class Pages(Spider):\n"
        "    name = 'pages'\n"
        "    async def parse(self, response):\n"
        "        yield {'url': response.url}\n"
        "        for url in response.links():\n"
        "            yield Request(url)\n"
    )
    args = ["run", "pages.py", "-a", f"start_urls={site.base}p/0", "-q"]
    first = await acli(*args, cwd=tmp_path)
    assert await first.wait() == 0
    site.versions[3] = 2
    again = await acli(*args, "--revisit", "0s", cwd=tmp_path)
    _, err = await again.communicate()
    assert again.returncode == 0, err.decode()
    assert f"revisited: {PAGES - 1} unchanged, 1 changed, 0 gone" in err.decode()
    stats = json.loads(cli("stats", "--store", "pages.db", "--json", cwd=tmp_path).stdout)
    assert stats["revisits"] == {"unchanged": PAGES - 1, "changed": 1, "gone": 0}
    result = cli("export", "--store", "pages.db", "--changed", "-o", "changed.jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    changed = [json.loads(line) for line in (tmp_path / "changed.jsonl").read_text().splitlines()]
    assert changed == [{"url": f"{site.base}p/3"}]
    bad = cli(*args, "--revisit", "soon", cwd=tmp_path)
    assert bad.returncode == 2
    assert "--revisit takes an age like 7d" in bad.stderr


class Mapped(Spider):
    name = "mapped"
    parsed: list[str] = []

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        type(self).parsed.append(response.url)
        yield {"url": response.url, "title": response.css_first("title").text()}


async def test_a_sitemap_lastmod_spares_the_requests_of_unchanged_pages(
    site: VersionedSite, tmp_path: Path
) -> None:
    store = tmp_path / "mapped.db"
    options = Settings(concurrency=1, per_domain_concurrency=1)

    async def crawl_mapped(revisit: float | None = None) -> Any:
        Mapped.parsed = []
        spider = Mapped(sitemap_urls=site.base + "sitemap.xml")
        return await Crawler(spider, options, store_path=store, revisit=revisit).run()

    await crawl_mapped()
    assert len(Mapped.parsed) == PAGES - 1
    site.versions[60] = 2  # the sitemap says so (lastmod 2099)
    site.requests.clear()
    stats = await crawl_mapped(revisit=0)
    assert site.requests["sitemap"] == 1  # read whole, not conditionally: it tells the news
    # the pages leased with the sitemap (one batch) were asked conditionally; every later
    # page the sitemap dates before its last fetch was marked unchanged without a request
    assert site.requests["conditional"] <= 20
    assert Mapped.parsed == [f"{site.base}p/60"]
    assert (stats.unchanged, stats.changed, stats.gone) == (PAGES - 2, 2, 0)  # + the sitemap
    after = await titles(store)
    assert after["60"] == "page 60 v2"
    assert len(after) == PAGES - 1
