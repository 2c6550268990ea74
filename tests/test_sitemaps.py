import datetime
import gzip
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crawler import Crawler, Response, Settings, Spider
from crawler.page.sitemaps import SitemapEntry, SitemapError, parse
from tests.sites import GraphSite

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def urlset(*entries: tuple[str, str | None]) -> bytes:
    urls = "".join(
        f"<url><loc>{u}</loc>{f'<lastmod>{m}</lastmod>' if m else ''}</url>" for u, m in entries
    )
    return f'<?xml version="1.0" encoding="UTF-8"?><urlset {NS}>{urls}</urlset>'.encode()


def test_urlset_index_gzip_and_robots() -> None:
    body = urlset(("http://a.com/1", "2024-05-01"), ("http://a.com/2", "2024-05-01T10:00:00+02:00"))
    _, entries = parse(body, robots=False, limit=10**6)
    assert [e.url for e in entries] == ["http://a.com/1", "http://a.com/2"]
    assert entries[0].lastmod == datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC)
    assert entries[1].lastmod is not None
    assert entries[1].lastmod.utcoffset() == datetime.timedelta(hours=2)
    assert parse(gzip.compress(body), robots=False, limit=10**6)[1] == entries
    index = f"<sitemapindex {NS}><sitemap><loc> http://a.com/s1.xml </loc></sitemap></sitemapindex>"
    assert parse(index.encode(), robots=False, limit=10**6) == (["http://a.com/s1.xml"], [])
    robots = (
        b"User-agent: *\nDisallow: /x\nSitemap: http://a.com/s.xml\nsitemap:http://b.com/t.xml\n"
    )
    assert parse(robots, robots=True, limit=10**6) == (
        ["http://a.com/s.xml", "http://b.com/t.xml"],
        [],
    )


def test_odd_entries_are_kept_or_skipped_not_fatal() -> None:
    body = (
        f"<urlset {NS}><url><loc>http://a.com/x</loc><lastmod>yesterday</lastmod>"
        "<priority>high</priority></url><url><lastmod>2024-01-01</lastmod></url></urlset>"
    )
    assert parse(body.encode(), robots=False, limit=10**6)[1] == [SitemapEntry("http://a.com/x")]


@pytest.mark.parametrize(
    "body",
    [b"<html><body>not a sitemap</body></html>", b"\x00\x01binary", b"\x1f\x8bnot gzip"],
)
def test_non_sitemaps_are_errors(body: bytes) -> None:
    with pytest.raises(SitemapError):
        parse(body, robots=False, limit=10**6)


def test_entity_bombs_and_gzip_bombs_are_refused() -> None:
    laughs = (
        '<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
        + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
        + f"]><urlset {NS}><url><loc>&i;</loc></url></urlset>"
    )
    started = time.monotonic()
    with pytest.raises(SitemapError):
        parse(laughs.encode(), robots=False, limit=10**6)
    assert time.monotonic() - started < 5
    with pytest.raises(SitemapError, match="larger than"):
        parse(gzip.compress(b" " * 10**7), robots=False, limit=10**6)


class FromSitemaps(Spider):
    name = "sitemaps"
    cutoff = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)

    def sitemap_request(self, entry: SitemapEntry) -> Any:
        if entry.lastmod is not None and entry.lastmod < self.cutoff:
            return None  # unchanged since the last crawl: skip it
        return super().sitemap_request(entry)

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url}  # follows no links: only sitemap URLs are fetched


async def test_a_sitemap_driven_crawl_reaches_exactly_the_sitemaps_urls(tmp_path: Path) -> None:
    site = GraphSite(hosts=2, pages=30)
    await site.start()
    try:
        h0, h1 = site.hosts
        wanted = {site.url(0, p) for p in range(0, 30, 3)} | {site.url(1, p) for p in (4, 8)}
        old = {site.url(0, 1), site.url(0, 2)}
        site.files["/sitemap-a.xml.gz"] = (
            "application/gzip",
            gzip.compress(
                urlset(
                    *[(u, "2024-06-01") for u in sorted(wanted) if h0 in u],
                    *[(u, "2019-01-01") for u in sorted(old)],
                )
            ),
        )
        site.files["/sitemap-b.xml"] = (
            "application/xml",
            urlset(*[(u, None) for u in sorted(wanted) if h1 in u]),
        )
        index = (
            f"<sitemapindex {NS}><sitemap><loc>/sitemap-a.xml.gz</loc></sitemap>"
            f"<sitemap><loc>http://{h1}:{site.ports[h1]}/sitemap-b.xml</loc></sitemap>"
            "</sitemapindex>"
        )
        site.files["/sitemap.xml"] = ("application/xml", index.encode())
        site.robots[h0] = (
            200,
            f"User-agent: *\nAllow: /\nSitemap: {site.url(0, 0).rsplit('/p/', 1)[0]}/sitemap.xml\n",
        )

        spider = FromSitemaps()
        spider.sitemap_urls = [site.url(0, 0).rsplit("/p/", 1)[0] + "/robots.txt"]
        spider.allowed_domains = [h0, h1]
        # sitemap entries count as depth 0; the second local host is not a start host
        settings = Settings(concurrency=8, max_depth=1, allow_private_networks=True)
        stats = await Crawler(spider, settings, store_path=tmp_path / "s.db").run()
        fetched_pages = {u for u in site.hits if "/p/" in u}
        assert fetched_pages == wanted
        assert stats.items == len(wanted)
    finally:
        await site.stop()
