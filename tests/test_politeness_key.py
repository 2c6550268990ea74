"""The politeness key at a real local server: 50 host names on one address, paced by address
(`politeness_key=ip`), reach that address no faster than `rate_limit`, measured at the server
on the crawl's clock (10 times as fast as the wall, so that 150 requests at 5 a second take 3
s); paced by host, the same crawl reaches it far faster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from crawler import Clock, Crawler, Request, Response, Settings, Spider
from tests.sites import serve

NAMES = 50
RATE = 5.0


class Names(Spider):
    name = "names"

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url}
        for url in response.links():
            yield Request(url)


@pytest.fixture
async def one_address() -> AsyncIterator[tuple[int, list[float], Clock]]:
    """One server on 127.0.0.1 for every name: "/" links to "/next"; it records when (on the
    crawl's clock) each request arrived."""
    clock = Clock(10)
    arrived: list[float] = []

    async def page(request: web.Request) -> web.Response:
        arrived.append(clock.now())
        if request.path == "/robots.txt":
            return web.Response(text="User-agent: *\nAllow: /\n")
        link = '<a href="/next">next</a>' if request.path == "/" else ""
        return web.Response(text=f"<html><body>{link}</body></html>", content_type="text/html")

    runners: list[web.AppRunner] = []
    ports = await serve(page, ["127.0.0.1"], runners)
    try:
        yield ports["127.0.0.1"], arrived, clock
    finally:
        for runner in runners:
            await runner.cleanup()


async def everything_at_one_address(host: str) -> list[str]:
    return ["127.0.0.1"]


async def crawl(port: int, clock: Clock, store_path: Path, key: str) -> None:
    spider = Names()
    spider.start_urls = [f"http://h{i}.test:{port}/" for i in range(NAMES)]
    settings = Settings(
        concurrency=16, per_domain_concurrency=2, rate_limit=RATE, politeness_key=key
    )
    crawler = Crawler(
        spider, settings, store_path=store_path, clock=clock, resolver=everything_at_one_address
    )
    stats = await crawler.run()
    assert stats.pages == 2 * NAMES
    assert stats.failed == 0


def busiest_second(times: list[float]) -> int:
    """The most requests that arrived within one second (of the crawl's clock)."""
    times = sorted(times)
    start, most = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


async def test_hosts_on_one_address_share_its_rate_with_the_ip_key(
    one_address: tuple[int, list[float], Clock], store_path: Path
) -> None:
    port, arrived, clock = one_address
    await crawl(port, clock, store_path, "ip")
    assert len(arrived) == 3 * NAMES  # robots.txt and two pages per name
    rate = (len(arrived) - 1) / (max(arrived) - min(arrived))
    assert rate <= RATE * 1.1  # 5.5 requests a second at most
    # a token bucket of burst 1, and a host's first page right after its robots.txt (whose
    # token is taken once it was fetched)
    assert busiest_second(arrived) <= RATE + 2


async def test_each_host_has_its_own_rate_with_the_host_key(
    one_address: tuple[int, list[float], Clock], store_path: Path
) -> None:
    port, arrived, clock = one_address
    await crawl(port, clock, store_path, "host")
    assert len(arrived) == 3 * NAMES
    assert busiest_second(arrived) > 2 * RATE
