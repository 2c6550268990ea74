"""The circuit breaker at the server, on a clock that runs faster than the wall: a host in a
bad minute is crawled whole, a host that answers only errors is slowed down but never given
up, and a host that never answers is spared and given up after max_host_outage."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crawler import Clock, Crawler, Request, Response, Settings, Spider
from tests.conftest import rows
from tests.sites import OverloadSite

FAST = 1000.0  # a 30 s cooldown takes 0.03 s


class Index(Spider):
    name = "overload"

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url}
        for url in response.links():
            yield Request(url)


def spider(site: OverloadSite) -> Index:
    index = Index()
    index.start_urls = [site.url(site.live, "/")]
    index.allowed_domains = [site.live, site.struggling_host, site.silent.host]
    return index


@pytest.fixture
async def site(request: pytest.FixtureRequest) -> AsyncIterator[OverloadSite]:
    overload = OverloadSite(**request.param)
    await overload.start()
    yield overload
    await overload.stop()


def by_error(store_path: Path, host: str) -> dict[str | None, int]:
    found = rows(
        store_path, "SELECT error, COUNT(*) FROM requests WHERE host = ? GROUP BY error", (host,)
    )
    return {error: n for error, n in found}  # type: ignore[misc]


@pytest.mark.parametrize("site", [{"healthy": 50, "flaky": 10}], indirect=True)
async def test_a_host_in_a_bad_minute_is_crawled_whole(
    site: OverloadSite, store_path: Path
) -> None:
    # the settings of the crawl that once lost 23 pages of this site to the breaker
    settings = Settings(max_retries=3, per_domain_concurrency=2, rate_limit=10, request_timeout=3)
    crawler = Crawler(spider(site), settings, store_path=store_path, clock=Clock(FAST))
    stats = await crawler.run()
    assert stats.ended == "complete"
    assert by_error(store_path, site.live) == {None: 1 + 60}  # the index and every page: done
    assert stats.items == 61
    for path in site.live_pages()[50:]:
        assert site.hits[site.live, path] == site.FLAKY_FAILURES + 1  # two 503s, then 200
    assert site.requests_to(site.live) == 1 + 1 + 50 + 10 * 3  # robots.txt, index, pages


@pytest.mark.parametrize("site", [{"healthy": 0, "flaky": 0, "struggling": 10}], indirect=True)
async def test_a_host_that_answers_only_errors_is_slowed_but_never_given_up(
    site: OverloadSite, store_path: Path
) -> None:
    settings = Settings(max_retries=2)
    crawler = Crawler(spider(site), settings, store_path=store_path, clock=Clock(FAST))
    assert (await crawler.run()).ended == "complete"
    # every URL fails on its own, once out of retries; none is abandoned
    assert by_error(store_path, site.struggling_host) == {"http_status": 10}
    assert site.requests_to(site.struggling_host) == 1 + 10 * 3  # robots.txt, 3 tries each


@pytest.mark.parametrize("site", [{"healthy": 0, "flaky": 0, "silent": 100}], indirect=True)
async def test_a_host_that_never_answers_is_spared_then_given_up(
    site: OverloadSite, store_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 100 times as fast: a 5-minute outage takes 3 s, and the crawler's own work between
    # probes (milliseconds) stays small beside the 30-60 s cooldowns
    crawler = Crawler(spider(site), Settings(), store_path=store_path, clock=Clock(100))
    assert (await crawler.run()).ended == "complete"
    errors = by_error(store_path, site.silent.host)
    assert sum(errors.values()) == 100
    assert errors.keys() <= {"robots_unavailable", "host_unavailable"}
    assert errors["host_unavailable"] >= 90
    # 5 failures in a row open the circuit, probes 30, 60, 60... s apart span the outage: a
    # dozen attempts (aiohttp sends a request once more when its connection is reset)
    assert 5 + 2 <= site.silent.requests <= 40, site.silent.paths
    given_up = [r.getMessage() for r in caplog.records if "giving up" in r.getMessage()]
    assert len(given_up) == 1
    outage = float(re.findall(r"no answer for ([0-9.]+) s", given_up[0])[0])
    assert outage >= 300  # max_host_outage's default
