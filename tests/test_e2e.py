"""End to end: the engine against a real HTTP server on several 127.0.0.x hosts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from crawler import Crawler, Request, Response, Settings, Spider
from crawler.export import export_items
from crawler.store import SQLiteStore
from tests.conftest import rows
from tests.sites import GraphSite


class GraphSpider(Spider):
    name = "graph"

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        title = response.css_first("title")
        yield {"url": response.url, "title": title.text() if title else None}
        for url in response.links():
            yield Request(url)


def spider_for(site: GraphSite) -> GraphSpider:
    spider = GraphSpider()
    spider.start_urls = site.start_urls
    return spider


async def exported(path: Path, tmp: Path) -> list[dict[str, Any]]:
    store = await SQLiteStore.open_readonly(path)
    try:
        out = tmp / "items.jsonl"
        await export_items(store.items, out)
    finally:
        await store.close()
    return [json.loads(line) for line in out.read_text().splitlines()]


SETTINGS = Settings(concurrency=16, per_domain_concurrency=3, obey_robots=False)


async def test_crawl_reaches_every_page_exactly_once(
    graph: GraphSite, store_path: Path, tmp_path: Path
) -> None:
    stats = await Crawler(spider_for(graph), SETTINGS, store_path=store_path).run()

    assert stats.ended == "complete"
    assert set(graph.hits) == graph.all_urls()
    assert max(graph.hits.values()) == 1
    assert stats.pages == len(graph.all_urls()) == 300
    items = await exported(store_path, tmp_path)
    assert sorted(i["url"] for i in items) == sorted(graph.all_urls())
    # Per-domain concurrency is never exceeded, as counted by the server.
    assert max(graph.peak_in_flight.values()) <= 3
    assert rows(store_path, "SELECT COUNT(*) FROM requests WHERE host = 'offsite.invalid'") == [
        (0,)
    ]


async def test_stopped_then_resumed_crawl_matches_an_uninterrupted_one(
    graph: GraphSite, tmp_path: Path
) -> None:
    whole = tmp_path / "whole.db"
    await Crawler(spider_for(graph), SETTINGS, store_path=whole).run()
    reference = sorted(json.dumps(i, sort_keys=True) for i in await exported(whole, tmp_path))
    graph.hits.clear()

    halves = tmp_path / "halves.db"
    first = Crawler(spider_for(graph), SETTINGS, store_path=halves)
    graph.on_hit = lambda n: first.stop() if n >= 120 else None
    stats = await first.run()
    assert stats.ended == "stopped"
    assert 120 <= stats.pages < 300
    assert rows(halves, "SELECT COUNT(*) FROM requests WHERE state = 1") == [(0,)]

    graph.on_hit = None
    stats = await Crawler(spider_for(graph), SETTINGS, store_path=halves).run()
    assert stats.ended == "complete"
    resumed = sorted(json.dumps(i, sort_keys=True) for i in await exported(halves, tmp_path))
    assert resumed == reference
    assert set(graph.hits) == graph.all_urls()
    assert max(graph.hits.values()) == 1  # a graceful stop finishes its pages: no re-fetch

    again = await Crawler(spider_for(graph), SETTINGS, store_path=halves).run()
    assert again.ended == "already complete"
    assert again.pages == 0


async def test_forced_stop_refetches_only_pages_in_flight(graph: GraphSite, tmp_path: Path) -> None:
    path = tmp_path / "forced.db"
    first = Crawler(spider_for(graph), SETTINGS, store_path=path)
    graph.on_hit = lambda n: first.stop(force=True) if n >= 100 else None
    stats = await first.run()
    assert stats.ended == "stopped"
    assert rows(path, "SELECT COUNT(*) FROM requests WHERE state = 1") == [(0,)]

    graph.on_hit = None
    await Crawler(spider_for(graph), SETTINGS, store_path=path).run()
    items = await exported(path, tmp_path)
    assert sorted(i["url"] for i in items) == sorted(graph.all_urls())  # once each
    refetched = sum(1 for n in graph.hits.values() if n > 1)
    assert refetched <= SETTINGS.concurrency


async def test_max_pages_and_max_depth(graph: GraphSite, tmp_path: Path) -> None:
    settings = Settings(concurrency=8, obey_robots=False, max_pages=25)
    stats = await Crawler(spider_for(graph), settings, store_path=tmp_path / "a.db").run()
    assert stats.ended == "max_pages"
    assert stats.pages == 25 == sum(graph.hits.values())

    graph.hits.clear()
    settings = Settings(concurrency=8, obey_robots=False, max_depth=1)
    await Crawler(spider_for(graph), settings, store_path=tmp_path / "b.db").run()
    depths = rows(tmp_path / "b.db", "SELECT MAX(depth) FROM requests")
    assert depths == [(1,)]
    assert len(graph.hits) < 300


async def test_robots_txt_disallowed_pages_are_never_requested(
    graph: GraphSite, store_path: Path
) -> None:
    graph.robots[graph.hosts[0]] = (200, "User-agent: *\nDisallow: /p/1\n")  # /p/1, /p/10...
    graph.robots[graph.hosts[1]] = (404, "")
    settings = Settings(concurrency=8, obey_robots=True)
    await Crawler(spider_for(graph), settings, store_path=store_path).run()

    host0 = [u for u in graph.hits if f"//{graph.hosts[0]}:" in u]
    assert host0
    assert not any("/p/1" in u.split(":", 2)[2] for u in host0)
    disallowed = rows(store_path, "SELECT COUNT(*) FROM requests WHERE error = 'robots_disallowed'")
    assert disallowed == [(11,)]  # /p/1 and /p/10 ... /p/19
