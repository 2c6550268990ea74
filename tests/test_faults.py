"""The crawler against a hostile local web: every fault asserted at the server and in the store."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crawler import Crawler, Request, Response, Settings, Spider
from tests.conftest import rows
from tests.helpers import stored_counts, stored_items
from tests.sites import FaultSite


class Everything(Spider):
    name = "faults"

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url}
        for url in response.links():
            yield Request(url)


@pytest.fixture
async def site() -> AsyncIterator[FaultSite]:
    fault_site = FaultSite(broken_pages=10, unreachable_pages=0, cap=1_000_000)
    await fault_site.start()
    yield fault_site
    await fault_site.stop()


SETTINGS = Settings(
    obey_robots=False,
    concurrency=8,
    per_domain_concurrency=2,
    request_timeout=0.5,
    max_retries=2,
    retry_backoff=0.01,
    max_response_size=1_000_000,
    max_redirects=5,
    breaker_threshold=3,
    breaker_cooldown=0.02,
    breaker_cooldown_max=0.08,
    # a host where nothing succeeds is given up in test_breaker; here, timeouts of some pages
    # must not make the host that serves them look useless
    host_give_up_after=3600,
)


def state(path: Path, url: str) -> tuple[Any, ...]:
    found = rows(
        path, "SELECT state, status, error, attempts, message FROM requests WHERE url = ?", (url,)
    )
    assert found, url
    return found[0]


DONE, FAILED = 2, 3


@pytest.mark.parametrize("backend", ["default", "http2", "impersonate"])
async def test_a_crawl_survives_a_hostile_web(
    site: FaultSite, store_path: Path, backend: str
) -> None:
    spider = Everything()
    spider.start_urls = [site.url(site.faults, "/")]
    spider.allowed_domains = [site.faults, site.broken, site.unreachable.host]
    settings = dataclasses.replace(SETTINGS, fetch_backend=backend)
    stats = await Crawler(spider, settings, store_path=store_path).run()
    assert stats.ended == "complete"
    f = site.faults

    # fails twice, then succeeds on the third attempt
    assert site.count(f, "/flaky") == 3
    assert state(store_path, site.url(f, "/flaky"))[:4] == (DONE, 200, None, 3)
    # a 429 with Retry-After: the retry comes no sooner than that
    first, second = site.hits[site.url(f, "/throttle")]
    assert second - first >= site.RETRY_AFTER
    assert state(store_path, site.url(f, "/throttle"))[0] == DONE
    # a stalled server costs request_timeout per attempt, then the URL fails
    assert site.count(f, "/stall") == 3
    assert state(store_path, site.url(f, "/stall"))[:4] == (FAILED, None, "timeout", 3)
    # a reset connection is retried, then recorded
    # aiohttp retries a request once when a pooled keep-alive connection dies (that is how a
    # stale connection looks, and a reset looks the same): up to two hits per attempt; libcurl
    # up to five times (CONN_MAX_RETRIES): up to six
    per_attempt = 2 if backend == "default" else 6
    assert 3 <= site.count(f, "/reset") <= 3 * per_attempt
    assert state(store_path, site.url(f, "/reset"))[:4] == (FAILED, None, "connect", 3)
    # permanent failures are not retried
    assert site.count(f, "/loop") == 1
    assert state(store_path, site.url(f, "/loop"))[:4] == (FAILED, None, "too_many_redirects", 1)
    assert site.count(f, "/missing") == 1
    assert state(store_path, site.url(f, "/missing"))[:4] == (FAILED, 404, "http_status", 1)
    for path in ("/bomb", "/big"):
        assert site.count(f, path) == 1
        assert state(store_path, site.url(f, path))[:4] == (FAILED, None, "too_large", 1)
    # binary content is visited, not parsed; mis-encoded HTML is parsed and its links followed
    assert state(store_path, site.url(f, "/binary"))[::4] == (DONE, "not parsed: image/png")
    assert state(store_path, site.url(f, "/misencoded"))[0] == DONE
    assert site.count(f, "/flaky?from=misencoded") == 3
    # a redirect to a page crawled on its own yields nothing twice
    assert "crawled on its own" in state(store_path, site.url(f, "/to-index"))[4]
    items = await stored_items(store_path)
    assert len(items) == len(set(items))

    # the broken host answers (500): it is slowed down, never given up, and each of its URLs
    # fails on its own once out of retries
    for n in range(site.broken_pages):
        assert site.count(site.broken, f"/d/{n}") == 3
        assert state(store_path, site.url(site.broken, f"/d/{n}"))[:4] == (
            FAILED,
            500,
            "http_status",
            3,
        )
    # the crawl ended with every URL done or failed
    counts = await stored_counts(store_path)
    assert counts.pending == 0
    assert stats.failed_total == counts.failed
