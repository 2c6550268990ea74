"""One crawl, many processes, one PostgreSQL store: politeness holds for the whole crawl, every
page is fetched once, every item stored once, and every process ends when the crawl does.

In-process tests run several Crawlers in one event loop (each its own store connection and
worker id, as separate processes would be); the kill -9 tests run real processes."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from crawler import Crawler, Request, Response, Settings, Spider
from crawler.store import open_readonly
from crawler.store.postgres import schema_name
from tests.helpers import crawler_cli
from tests.sites import GraphSite

pytestmark = pytest.mark.slow  # many processes on PostgreSQL


class Titles(Spider):
    name = "titles"

    async def parse(self, response: Response) -> Any:
        yield {"url": response.url, "title": response.css_first("title").text()}
        for url in response.links():
            yield Request(url)


def crawler_for(site: GraphSite, dsn: str, spider: str, **settings: Any) -> Crawler:
    spider_obj = Titles(start_urls=",".join(site.start_urls))
    spider_obj.name = spider
    options = {"concurrency": 8, "per_domain_concurrency": 2, "lease_ttl": 2.0, **settings}
    return Crawler(spider_obj, Settings().merge(options), store_path=dsn)


async def stored_items(dsn: str, spider: str) -> list[dict[str, Any]]:
    store = await open_readonly(dsn, spider)
    try:
        return [json.loads(item) async for item in store.items()]
    finally:
        await store.close()


async def test_one_process_crawls_the_site_as_on_sqlite(
    graph: GraphSite, postgres_dsn: str, pg_spider: str, tmp_path: Path
) -> None:
    stats = await crawler_for(graph, postgres_dsn, pg_spider).run()
    assert stats.ended == "complete"
    items = await stored_items(postgres_dsn, pg_spider)
    assert sorted(i["url"] for i in items) == sorted(graph.all_urls())
    assert stats.items_total == len(items) == len(graph.all_urls())
    again = await crawler_for(graph, postgres_dsn, pg_spider).run()
    assert again.ended == "already complete"


async def test_three_processes_share_hosts_politely_and_end_together(
    postgres_dsn: str, pg_spider: str
) -> None:
    site = GraphSite(hosts=6, pages=60, links=4, delay=0.003)
    await site.start()
    try:
        crawlers = [crawler_for(site, postgres_dsn, pg_spider) for _ in range(3)]
        results = await asyncio.gather(*(c.run() for c in crawlers))
    finally:
        await site.stop()
    assert [r.ended for r in results] == ["complete"] * 3
    pages = [h for h in site.hits.elements() if "/p/" in h]
    assert Counter(pages).most_common(1)[0][1] == 1  # every page fetched once
    assert set(pages) == site.all_urls()
    assert max(site.peak_in_flight.values()) <= 2  # per_domain_concurrency, for the crawl
    assert set(site.robots_hits.values()) == {1}  # robots.txt once per host
    items = await stored_items(postgres_dsn, pg_spider)
    assert sorted(i["url"] for i in items) == sorted(site.all_urls())
    assert sum(r.pages for r in results) == len(site.all_urls())


async def test_max_pages_holds_for_the_whole_crawl(
    graph: GraphSite, postgres_dsn: str, pg_spider: str
) -> None:
    crawlers = [crawler_for(graph, postgres_dsn, pg_spider, max_pages=70) for _ in range(2)]
    results = await asyncio.gather(*(c.run() for c in crawlers))
    assert {r.ended for r in results} <= {"max_pages", "complete"}
    pages = [h for h in graph.hits.elements() if "/p/" in h]
    assert len(pages) == 70, (Counter(pages).most_common(5), [(r.pages, r.ended) for r in results])
    assert len(await stored_items(postgres_dsn, pg_spider)) == 70


async def test_a_rate_limit_holds_across_processes(postgres_dsn: str, pg_spider: str) -> None:
    site = GraphSite(hosts=2, pages=8, links=2)
    await site.start()
    try:
        crawlers = [crawler_for(site, postgres_dsn, pg_spider, rate_limit=20.0) for _ in range(3)]
        await asyncio.gather(*(c.run() for c in crawlers))
    finally:
        await site.stop()
    for times in site.times.values():
        # 20 requests/s for the crawl: n starts span at least (n - 1) / 20 s. The server shares
        # the crawlers' event loop, so a busy loop may stamp the first arrival late: one
        # interval is allowed for that (unpaced, the n requests would arrive within ~10 ms)
        assert times[-1] - times[0] >= (len(times) - 2) * 0.05


async def test_stats_show_the_workers(graph: GraphSite, postgres_dsn: str, pg_spider: str) -> None:
    await asyncio.gather(*(crawler_for(graph, postgres_dsn, pg_spider).run() for _ in range(2)))
    store = await open_readonly(postgres_dsn, pg_spider)
    try:
        summary = await store.summary()
        assert len(summary.workers) == 2
        assert sum(w.pages for w in summary.workers) == len(graph.all_urls())
        assert not any(w.alive for w in summary.workers)
    finally:
        await store.close()
    connection = await asyncpg.connect(postgres_dsn)
    try:
        lost = await connection.fetchval(
            f'SELECT count(*) FROM "{schema_name(pg_spider)}".requests WHERE state <= 1'
        )
    finally:
        await connection.close()
    assert lost == 0


SPIDER = """
from crawler import Request, Spider

class Graph(Spider):
    name = "NAME"
    custom_settings = {"concurrency": 4, "per_domain_concurrency": 2, "lease_ttl": 1.0}

    async def parse(self, response):
        yield {"url": response.url}
        for url in response.links():
            yield Request(url)
"""


async def start_worker(spider: Path, dsn: str, site: GraphSite) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crawler",
        "run",
        str(spider),
        "--store",
        dsn,
        "-a",
        f"start_urls={','.join(site.start_urls)}",
        "-q",
        cwd=spider.parent,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_kill_9_of_a_worker_three_times_loses_nothing_and_stores_items_once(
    postgres_dsn: str, pg_spider: str, tmp_path: Path
) -> None:
    spider = tmp_path / "graph.py"
    spider.write_text(SPIDER.replace("NAME", pg_spider))
    site = GraphSite(hosts=6, pages=80, links=4, delay=0.03)
    await site.start()
    kills: list[int] = []
    victims: list[asyncio.subprocess.Process] = []
    spawning: set[asyncio.Task[None]] = set()
    try:
        others = [await start_worker(spider, postgres_dsn, site) for _ in range(2)]
        victims.append(await start_worker(spider, postgres_dsn, site))

        async def restart() -> None:
            victims.append(await start_worker(spider, postgres_dsn, site))

        def on_hit(hits: int) -> None:
            # kill -9 the victim in the middle of its pages at 80, 200 and 320 pages served
            # (or as soon after as it runs again), then start it again
            if len(kills) < 3 and hits >= (80, 200, 320)[len(kills)] and not spawning:
                victims[-1].send_signal(signal.SIGKILL)
                kills.append(hits)
                task = asyncio.ensure_future(restart())
                spawning.add(task)
                task.add_done_callback(spawning.discard)

        site.on_hit = on_hit
        codes = [await asyncio.wait_for(w.wait(), 120) for w in others]
        while spawning:
            await asyncio.gather(*spawning)
        ends = [await asyncio.wait_for(v.wait(), 120) for v in victims]
        stderr = (await victims[-1].stderr.read()).decode() if victims[-1].stderr else ""
    finally:
        await site.stop()
    assert len(kills) == 3
    assert ends == [-signal.SIGKILL] * 3 + [0], stderr
    assert codes == [0, 0]
    items = await stored_items(postgres_dsn, pg_spider)
    urls = [i["url"] for i in items]
    assert len(urls) == len(set(urls))  # each item exactly once
    assert set(urls) == site.all_urls()
    pages = Counter(h for h in site.hits.elements() if "/p/" in h)
    refetched = sum(n - 1 for n in pages.values())
    assert refetched <= 3 * 4  # per kill, at most the killed worker's concurrency


async def test_run_j_2_then_stats_export_and_failures(
    graph: GraphSite, postgres_dsn: str, pg_spider: str, tmp_path: Path
) -> None:
    spider = tmp_path / "graph.py"
    spider.write_text(SPIDER.replace("NAME", pg_spider))
    start = f"start_urls={','.join(graph.start_urls)}"
    store = ("--store", postgres_dsn)
    code, _, err = await crawler_cli(
        "run", "graph.py", *store, "-j", "2", "-a", start, "-o", "items.jsonl", cwd=tmp_path
    )
    assert code == 0, err
    lines = (tmp_path / "items.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["url"] for line in lines) == sorted(graph.all_urls())
    code, out, err = await crawler_cli(
        "stats", *store, "--spider", pg_spider, "--json", cwd=tmp_path
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["totals"]["done"] == len(graph.all_urls())
    assert len(summary["workers"]) == 2
    assert not summary["running"]
    code, out, err = await crawler_cli("stats", *store, "--spider", pg_spider, cwd=tmp_path)
    assert "worker" in out
    code, _, err = await crawler_cli(
        "export", *store, "--spider", pg_spider, "-o", "again.csv", cwd=tmp_path
    )
    assert (code, err.strip()) == (0, f"wrote {len(graph.all_urls())} items to again.csv")
    code, out, err = await crawler_cli("failures", *store, "--spider", pg_spider, cwd=tmp_path)
    assert (code, out) == (0, "")
    code, _, err = await crawler_cli("stats", *store, cwd=tmp_path)
    assert code == 2
    assert "--spider" in err
    code, _, err = await crawler_cli(
        "run", "graph.py", "-j", "2", "-a", start, "--store", "x.db", cwd=tmp_path
    )
    assert code == 2
    assert "postgresql://" in err


async def test_three_processes_feed_one_file_sink_one_at_a_time(
    postgres_dsn: str, pg_spider: str, tmp_path: Path
) -> None:
    """A sink is fed by one process at a time (the others take over when it ends), so a file
    sink of the crawl gets every item exactly once, however the processes' commits interleave
    (the PostgreSQL bookmark never skips an item that commits late)."""
    from crawler import JsonlSink

    batches: list[tuple[int, int, int, int]] = []  # (crawler, first id, last id, length after)

    class Traced(JsonlSink):
        """Says which crawler wrote which items (for the failure message)."""

        def __init__(self, n: int) -> None:
            super().__init__(tmp_path / "items.jsonl")
            self.n = n

        async def write(self, items: Any) -> None:
            await super().write(items)
            batches.append((self.n, items[0].id, items[-1].id, self._length))

    site = GraphSite(hosts=6, pages=60, links=4, delay=0.003)
    await site.start()
    try:
        crawlers = [crawler_for(site, postgres_dsn, pg_spider) for _ in range(3)]
        for n, crawler in enumerate(crawlers):
            crawler.spider.sinks = [Traced(n)]
        results = await asyncio.gather(*(c.run() for c in crawlers))
    finally:
        await site.stop()
    assert [r.ended for r in results] == ["complete"] * 3
    stored = sorted(i["url"] for i in await stored_items(postgres_dsn, pg_spider))
    assert stored == sorted(site.all_urls()), Counter(stored).most_common(3)
    lines = (tmp_path / "items.jsonl").read_text().splitlines()
    written = sorted(json.loads(line)["url"] for line in lines)
    assert written == stored, (
        len(written),
        [r.pages for r in results],
        batches,
        Counter(written).most_common(3),
    )


async def test_each_process_of_run_j_loads_the_spider_itself(
    graph: GraphSite, postgres_dsn: str, pg_spider: str, tmp_path: Path
) -> None:
    """The processes of `run -j` are forks (on Linux) made before the spider is loaded: what
    the spider's module opens at import is each process's own, never the parent's."""
    spider = tmp_path / "graph.py"
    spider.write_text(
        "import os\nLOADED_IN = os.getpid()\n"
        + SPIDER.replace("NAME", pg_spider).replace(
            'yield {"url": response.url',
            'yield {"loaded_in": LOADED_IN, "pid": os.getpid(), "url": response.url',
        )
    )
    start = f"start_urls={','.join(graph.start_urls)}"
    code, _, err = await crawler_cli(
        "run", "graph.py", "--store", postgres_dsn, "-j", "2", "-a", start, cwd=tmp_path
    )
    assert code == 0, err
    items = await stored_items(postgres_dsn, pg_spider)
    assert len(items) == len(graph.all_urls())
    assert all(item["loaded_in"] == item["pid"] for item in items)
