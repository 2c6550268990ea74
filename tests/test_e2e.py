"""End to end: the engine against a real HTTP server on several 127.0.0.x hosts."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crawler import ConfigError, Crawler, Request, Response, Settings, Spider
from crawler.crawl.export import export_items
from crawler.store import SQLiteStore, Store
from crawler.store.memory import MemoryStore
from tests.conftest import rows
from tests.helpers import stored_counts, stored_failures, stored_summary
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


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
async def test_a_crawl_runs_on_a_store_its_caller_opened_and_leaves_it_open(
    graph: GraphSite, store_path: Path, backend: str
) -> None:
    store: Store
    if backend == "sqlite":
        store = await SQLiteStore.open(store_path, GraphSpider.name)
    else:  # the reference store: what the crawl needs of a store, and nothing on disk
        store = await MemoryStore.open(GraphSpider.name)
    try:
        stats = await Crawler(spider_for(graph), SETTINGS, store=store).run()
        assert stats.ended == "complete"
        assert stats.pages == 300
        again = await Crawler(spider_for(graph), SETTINGS, store=store).run()  # still open
        assert again.ended == "already complete"
        assert len([item async for item in store.items()]) == 300
    finally:
        await store.close()
    assert max(graph.hits.values()) == 1
    with pytest.raises(ConfigError, match="neither store_path nor fresh"):
        Crawler(spider_for(graph), SETTINGS, store=store, fresh=True)


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
    assert (await stored_counts(halves)).leased == 0

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
    assert (await stored_counts(path)).leased == 0

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
    disallowed = await stored_failures(store_path, error="robots_disallowed")
    assert len(disallowed) == 11  # /p/1 and /p/10 ... /p/19


@pytest.mark.slow
async def test_robots_unavailable_hosts_are_not_crawled_and_missing_robots_allow_all(
    graph: GraphSite, store_path: Path
) -> None:
    graph.robots[graph.hosts[0]] = (503, "")
    settings = Settings(
        concurrency=8,
        obey_robots=True,
        max_retries=1,
        retry_backoff=0.0,
        breaker_cooldown=0.01,
        breaker_cooldown_max=0.02,
    )
    await Crawler(spider_for(graph), settings, store_path=store_path).run()
    assert graph.hosts[0] not in graph.times  # robots 503: not one page fetched
    for host in graph.hosts[1:]:  # robots 404: everything fetched
        assert sum(1 for u in graph.hits if f"//{host}:" in u) == graph.pages
    errors = rows(
        store_path, "SELECT DISTINCT error FROM requests WHERE host = ?", (graph.hosts[0],)
    )
    assert set(errors) == {("robots_unavailable",)}  # it answers: never given up


async def test_crawl_delay_spaces_requests_at_the_server(store_path: Path) -> None:
    site = GraphSite(hosts=2, pages=6, links=1)
    await site.start()
    try:
        slow, fast = site.hosts
        site.robots[slow] = (200, "User-agent: crawler\nCrawl-delay: 0.3\n")
        settings = Settings(concurrency=8, per_domain_concurrency=4)
        await Crawler(spider_for(site), settings, store_path=store_path).run()
        times = site.times[slow]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(times) == 6
        # without the delay these gaps are milliseconds; half the delay leaves room for a
        # busy machine's jitter between two requests' arrival
        assert min(gaps) >= 0.15, gaps
        assert times[-1] - times[0] >= 5 * 0.3 * 0.9
        fast_times = site.times[fast]
        # the other host is not held back: it is done before the slow host's delays are
        assert fast_times[-1] < times[-1]
    finally:
        await site.stop()


async def test_robots_txt_is_kept_across_a_resume(graph: GraphSite, store_path: Path) -> None:
    settings = Settings(concurrency=8, max_pages=20)
    first = await Crawler(spider_for(graph), settings, store_path=store_path).run()
    assert first.ended == "max_pages"
    fetched_first = sum(graph.robots_hits.values())
    await Crawler(spider_for(graph), settings.merge({"max_pages": 0}), store_path=store_path).run()
    assert set(graph.hits) == graph.all_urls()
    assert sum(graph.robots_hits.values()) == fetched_first <= len(graph.hosts)


async def test_per_host_page_budget_holds_across_resumes(
    graph: GraphSite, store_path: Path
) -> None:
    settings = Settings(
        concurrency=16, per_domain_concurrency=3, obey_robots=False, max_pages_per_host=10
    )
    stats = await Crawler(spider_for(graph), settings, store_path=store_path).run()
    assert stats.pages == 40
    for host in graph.hosts:
        assert sum(1 for u in graph.hits if f"//{host}:" in u) == 10
    assert (await stored_counts(store_path)).leased == 0
    again = await Crawler(spider_for(graph), settings, store_path=store_path).run()
    assert again.pages == 0
    assert sum(graph.hits.values()) == 40
    more = await Crawler(
        spider_for(graph), settings.merge({"max_pages_per_host": 12}), store_path=store_path
    ).run()
    assert more.pages == 8


async def test_the_page_budget_counts_only_requests_that_went_out(store_path: Path) -> None:
    graph = GraphSite(hosts=2, pages=200, links=8)
    await graph.start()
    try:
        await _budget_scenario(graph, store_path)
    finally:
        await graph.stop()


async def _budget_scenario(graph: GraphSite, store_path: Path) -> None:
    spider = GraphSpider()
    spider.start_urls = [graph.url(0, n) for n in range(0, graph.pages, 10)]
    spider.allowed_domains = []  # any host: links to the other (unnamed, local) host are blocked
    graph.robots[graph.hosts[0]] = (200, "User-agent: *\nDisallow: /p/*5$\n")  # 5, 15, 25...
    settings = Settings(concurrency=8, max_pages=50)
    stats = await Crawler(spider, settings, store_path=store_path).run()
    assert stats.ended == "max_pages"
    assert sum(graph.hits.values()) == 50  # at the server: exactly the budget
    refused = (await stored_summary(store_path)).errors
    assert refused["blocked_address"] > 0
    assert refused["robots_disallowed"] > 0
    assert (await stored_counts(store_path)).fetched == 50

    # a resume counts what went out before, not what was refused
    more = await Crawler(spider, settings.merge({"max_pages": 60}), store_path=store_path).run()
    assert more.ended == "max_pages"
    assert sum(graph.hits.values()) == 60
