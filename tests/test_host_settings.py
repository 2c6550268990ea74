"""Per-host settings (a spider's `host_settings`): which pattern a host takes, what a bad one
says, and what the crawl does with them: headers on the hosts' requests, their own limits."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crawler import ConfigError, Request, Response, Settings, Spider
from crawler.crawl.assembly import Parts
from crawler.crawl.frontier import Frontier
from crawler.settings import HostOverrides, HostSettings
from crawler.store import NewRequest, SQLiteStore
from tests.helpers import crawl, html

PATTERNS = {
    "api.example.com": {"rate_limit": 0.5, "per_domain_concurrency": 1},
    "*.example.com": {"headers": {"X-Team": "web"}},
    "*.deep.example.com": {"render": True},
    "Shop.Example.ORG.": {"rate_limit": 3},
}


def test_a_host_takes_its_most_specific_pattern() -> None:
    overrides = HostOverrides(PATTERNS, where="spider 's'")
    assert overrides.for_host("api.example.com") == HostSettings(
        rate_limit=0.5, per_domain_concurrency=1
    )
    web = HostSettings(headers=(("X-Team", "web"),))
    assert overrides.for_host("example.com") == web  # "*.domain": the domain itself too
    assert overrides.for_host("www.example.com") == web
    assert overrides.for_host("a.b.deep.example.com") == HostSettings(render=True)
    assert overrides.for_host("shop.example.org") == HostSettings(rate_limit=3.0)
    assert overrides.for_host("www.shop.example.org") is None  # a host pattern is that host
    assert overrides.for_host("notexample.com") is None
    assert not HostOverrides({}, where="s")


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        ({"a.com": {"concurrency": 2}}, "'concurrency' cannot be set per host"),
        ({"a.com": {"rate_limit": "fast"}}, "'rate_limit' must be float"),
        ({"a.com": {"rate_limit": -1}}, "must be at least 0"),
        ({"a.com": {"per_domain_concurrency": 0}}, "must be at least 1"),
        ({"a.com": {"render": "yes"}}, "'render' must be bool"),
        ({"a.com": {"headers": {"X": "a\nb"}}}, "single-line"),
        ({"a.com": 3}, "must be a dict of settings"),
        ({"bad host!": {}}, r"host_settings\['bad host!'\]"),
    ],
)
def test_a_bad_host_setting_is_an_error(patterns: dict[str, Any], message: str) -> None:
    class Bad(Spider):
        name = "bad"
        host_settings = patterns

    with pytest.raises(ConfigError, match=message):
        Parts(Bad(), Settings())


def test_a_hosts_limits_are_its_own() -> None:
    class Limits(Spider):
        name = "limits"
        host_settings = PATTERNS

    parts = Parts(Limits(), Settings(per_domain_concurrency=4, rate_limit=10))
    limits = parts._host_limits()
    assert limits("api.example.com") == (1, 0.5)
    assert limits("www.example.com") == (4, 10.0)
    assert limits("elsewhere.net") == (4, 10.0)


class Headers(Spider):
    name = "headers"
    start_urls = ["http://a.test/", "http://www.b.test/", "http://c.test/"]
    host_settings = {
        "a.test": {"headers": {"X-Token": "secret", "Accept-Language": "de"}},
        "*.b.test": {"headers": {"X-Team": "b"}},
    }

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        if response.url == "http://a.test/":
            yield Request("http://a.test/own", headers={"accept-language": "fr"})
        yield {"url": response.url}


async def test_host_headers_go_with_their_hosts_requests(store_path: Path) -> None:
    sent: dict[str, httpx.Headers] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        sent[str(request.url)] = request.headers
        return html("ok")

    stats = await crawl(Headers(), handler, store_path)
    assert stats.pages == 4
    assert sent["http://a.test/"]["x-token"] == "secret"
    assert sent["http://a.test/"]["accept-language"] == "de"
    assert sent["http://a.test/own"]["accept-language"] == "fr"  # the request's own wins
    assert sent["http://a.test/own"]["x-token"] == "secret"
    assert sent["http://www.b.test/"]["x-team"] == "b"
    assert "x-token" not in sent["http://c.test/"]
    assert "x-team" not in sent["http://c.test/"]


async def test_the_frontier_gives_each_host_its_own_limits(store_path: Path) -> None:
    async with await SQLiteStore.open(store_path, "s") as store:
        await store.add(
            [NewRequest(f"http://{h}/{n}", h) for h in ("one.test", "three.test") for n in range(4)]
        )
        frontier = Frontier(
            store,
            per_host_concurrency=2,
            rate_limit=0.0,
            limits=lambda host: (1 if host == "one.test" else 3, 0.0),
        )
        await frontier.start()
        handed = [await frontier.next() for _ in range(4)]
        hosts = sorted(r.host for r in handed if r)
        assert hosts == ["one.test", "three.test", "three.test", "three.test"]
        waiting = asyncio.create_task(frontier.next())
        await asyncio.sleep(0.01)
        assert not waiting.done()  # both hosts are at their own limits
        waiting.cancel()
        await frontier.aclose()


async def test_a_crawl_of_more_hosts_than_it_keeps_in_memory(store_path: Path) -> None:
    """400 hosts, at most 256 held (16 x concurrency): idle hosts are evicted, every page is
    crawled once, and every robots.txt is fetched once (an evicted host's rules come back
    from the store)."""
    hosts = [f"h{i}.test" for i in range(400)]
    hits: Counter[str] = Counter()

    class Broad(Spider):
        name = "broad"
        start_urls = [f"http://{host}/" for host in hosts]

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}
            if response.url.endswith("/"):
                yield Request(response.url + "next")

    def handler(request: httpx.Request) -> httpx.Response:
        hits[str(request.url)] += 1
        if request.url.path == "/robots.txt":
            return httpx.Response(200, text="User-agent: *\nCrawl-delay: 0.001\n")
        return html("page")

    stats = await crawl(
        Broad(), handler, store_path, obey_robots=True, max_hosts_in_memory=1, concurrency=4
    )
    assert stats.pages == 800
    assert stats.failed == 0
    assert set(hits.values()) == {1}  # every page and every robots.txt once
    assert len(hits) == 1200
    assert stats.hosts_evicted >= 100
    assert stats.hosts_in_memory <= 256 + 4  # and a host more while a worker idles
