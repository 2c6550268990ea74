"""The HTTP cache (http_cache): a second run answered from it touches the server 0 times, is
not rate-limited, and is counted; the rfc9111 policy follows the response headers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from crawler import Crawler, Response, Settings
from crawler.net.politeness import TokenBucket
from crawler.store import SQLiteStore
from tests.sites import GraphSite
from tests.test_cli import acli, cli, run_args, spider_file  # noqa: F401 - a fixture
from tests.test_e2e import GraphSpider, spider_for


def settings(tmp_path: Path, **more: Any) -> Settings:
    return Settings().merge(
        {
            "concurrency": 8,
            "per_domain_concurrency": 2,
            "http_cache": True,
            "http_cache_dir": str(tmp_path / "cache"),
            **more,
        }
    )


def hits(site: GraphSite) -> int:
    return sum(site.hits.values()) + sum(site.robots_hits.values())


async def test_a_second_run_from_the_cache_sends_nothing(graph: GraphSite, tmp_path: Path) -> None:
    first = await Crawler(spider_for(graph), settings(tmp_path), store_path=tmp_path / "1.db").run()
    sent = hits(graph)
    assert first.cached == 0
    assert sent == len(graph.all_urls()) + len(graph.hosts)  # the pages and robots.txt
    cached: list[bool] = []

    class Watching(GraphSpider):
        async def parse(self, response: Response) -> Any:
            cached.append(response.cached)
            async for output in super().parse(response):
                yield output

    spider = Watching()
    spider.start_urls = graph.start_urls
    second = await Crawler(spider, settings(tmp_path), store_path=tmp_path / "2.db").run()
    assert hits(graph) == sent  # not one request
    assert second.items_total == first.items_total
    assert second.cached == len(graph.all_urls())
    assert set(cached) == {True}
    store = await SQLiteStore.open_readonly(tmp_path / "2.db")
    try:
        assert (await store.counters())["http:cached"] == len(graph.all_urls())
    finally:
        await store.close()


async def test_the_rfc9111_policy_reuses_only_what_headers_allow(
    graph: GraphSite, tmp_path: Path
) -> None:
    """The test site sends no caching headers: by HTTP's rules nothing may be reused."""
    options = settings(tmp_path, http_cache_policy="rfc9111")
    await Crawler(spider_for(graph), options, store_path=tmp_path / "1.db").run()
    sent = hits(graph)
    second = await Crawler(spider_for(graph), options, store_path=tmp_path / "2.db").run()
    assert second.cached == 0
    assert hits(graph) == 2 * sent


def test_a_cached_answer_gives_its_token_back() -> None:
    bucket = TokenBucket(rate=1.0, now=0.0)
    bucket.take(0.0)
    assert bucket.available_at(0.0) == 1.0
    bucket.give_back(0.0)
    assert bucket.available_at(0.0) == 0.0
    bucket.give_back(0.0)  # never more than the burst
    bucket.take(0.0)
    assert bucket.available_at(0.0) == 1.0


async def test_cached_pages_are_not_rate_limited(graph: GraphSite, tmp_path: Path) -> None:
    """At 1 request/s per host a run of 300 pages would take over a minute; from the cache
    every page after the first of each host starts without waiting for a token: the run ends
    with the crawl's own clock barely moved."""
    from tests.helpers import ManualClock

    await Crawler(spider_for(graph), settings(tmp_path), store_path=tmp_path / "1.db").run()
    clock = ManualClock(1000.0)  # time stands still: a rate-limited request would wait forever
    limited = settings(tmp_path, rate_limit=1.0)
    crawler = Crawler(spider_for(graph), limited, store_path=tmp_path / "2.db", clock=clock)
    # (a generous bound, not a timing assertion: a token not given back would wait forever)
    stats = await asyncio.wait_for(crawler.run(), 120)
    assert stats.ended == "complete"
    assert stats.cached == len(graph.all_urls())


@pytest.mark.usefixtures("spider_file")
async def test_the_cache_from_the_command_line(graph: GraphSite, tmp_path: Path) -> None:
    args = [*run_args(graph), "-s", "http_cache=true", "-q"]
    first = await acli(*args, cwd=tmp_path)
    _, err = await first.communicate()
    assert first.returncode == 0, err.decode()
    sent = hits(graph)
    again = await acli(*args, "--fresh", cwd=tmp_path)
    _, err = await again.communicate()
    assert again.returncode == 0, err.decode()
    assert hits(graph) == sent
    assert f"{len(graph.all_urls())} pages from the HTTP cache" in err.decode()
    stats = json.loads(cli("stats", "--store", "graph.db", "--json", cwd=tmp_path).stdout)
    assert stats["cached"] == len(graph.all_urls())
    assert (tmp_path / ".crawler-cache" / "http.db").exists()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("http_cache_policy=sometimes", "must be one of all, rfc9111"),
        ("http_cache_ttl=-1", "'http_cache_ttl' must be at least 0"),
    ],
)
def test_bad_cache_settings(tmp_path: Path, setting: str, message: str) -> None:
    (tmp_path / "s.py").write_text(
        "from crawler import Spider\nclass S(Spider):\n    name = 's'\n"
        "    start_urls = ['http://127.0.0.1:9/']\n"
    )
    result = cli("run", "s.py", "-s", setting, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr


def test_a_cached_second_run_of_the_demo_sends_nothing(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a free port, so that both runs crawl the same URLs
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    args = ("demo", "--books", "30", "--port", port, "-s", "http_cache=true", "-q")
    first = cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "the shop served 0 requests" not in first.stderr
    second = cli(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "the shop served 0 requests" in second.stderr
    assert "pages from the HTTP cache" in second.stderr
