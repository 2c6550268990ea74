from pathlib import Path

import pytest

from crawler import HTTPStatusError
from crawler.net.robots import (
    MAX_ROBOTS_BYTES,
    Robots,
    RobotsCache,
    RobotsUnavailable,
    agent_token,
)
from crawler.store import SQLiteStore


class FakeOrigin:
    def __init__(self, text: str = "", status: int = 200) -> None:
        self.text, self.status, self.fetches = text, status, 0
        self.kept: dict[str, tuple[float, str | None]] = {}

    async def fetch(self, url: str) -> str:
        self.fetches += 1
        if self.status >= 400:
            raise HTTPStatusError(url, self.status)
        return self.text

    async def load(self, origin: str) -> tuple[float, str | None] | None:
        return self.kept.get(origin)

    async def save(self, origin: str, fetched_at: float, text: str | None) -> None:
        self.kept[origin] = (fetched_at, text)

    def cache(self) -> RobotsCache:
        return RobotsCache(self.fetch, self.load, self.save)


def test_agent_token() -> None:
    assert agent_token("crawler/0.1 (+https://x.org/)") == "crawler"
    assert agent_token("MyBot") == "MyBot"


async def test_rules_intervals_and_ttl_in_virtual_time() -> None:
    origin = FakeOrigin(
        "User-agent: crawler\nDisallow: /private\nCrawl-delay: 3\n\nUser-agent: *\nDisallow: /\n"
    )
    clock = [0.0]
    intervals: list[tuple[str, float]] = []
    robots = Robots(
        origin.cache(),
        "crawler",
        ttl=100,
        clock=lambda: clock[0],
        on_rules=lambda host, s: intervals.append((host, s)),
    )
    assert await robots.allowed("http://a.com/public")
    assert not await robots.allowed("http://a.com/private/x")
    assert origin.fetches == 1
    assert intervals == [("a.com", 3.0)]
    clock[0] = 101.0  # older than the TTL: fetched again
    assert await robots.allowed("http://a.com/public")
    assert origin.fetches == 2
    other = Robots(origin.cache(), "otherbot", clock=lambda: clock[0])  # shares the store
    assert not await other.allowed("http://a.com/public")  # kept: not fetched again
    assert origin.fetches == 2


async def test_request_rate_counts_as_an_interval() -> None:
    origin = FakeOrigin("User-agent: *\nRequest-rate: 1/10\nCrawl-delay: 2\n")
    seen: list[float] = []
    robots = Robots(origin.cache(), "crawler", on_rules=lambda host, s: seen.append(s))
    await robots.allowed("http://a.com/")
    assert seen == [10.0]


async def test_status_rules() -> None:
    assert await Robots(FakeOrigin(status=404).cache(), "c").allowed("http://a.com/x")
    assert await Robots(FakeOrigin(status=401).cache(), "c").allowed("http://a.com/x")
    unavailable = FakeOrigin(status=503)
    robots = Robots(unavailable.cache(), "c")
    for _ in range(2):  # not cached: each call tries again
        with pytest.raises(RobotsUnavailable):
            await robots.allowed("http://a.com/x")
    assert unavailable.fetches == 2
    assert unavailable.kept == {}


async def test_a_huge_robots_txt_is_cut_at_a_line() -> None:
    filler = "# " + "x" * 97 + "\n"
    text = "User-agent: *\nDisallow: /a\n" + filler * (MAX_ROBOTS_BYTES // 100)
    cut = text[:MAX_ROBOTS_BYTES] + "Disallow: /b"  # as the fetcher truncates
    robots = Robots(FakeOrigin(cut).cache(), "c")
    assert not await robots.allowed("http://a.com/a")
    assert await robots.allowed("http://a.com/b")  # the partial last line was dropped


async def test_robots_are_kept_in_the_store(store_path: Path) -> None:
    async with await SQLiteStore.open(store_path, "s") as store:
        assert await store.robots_get("http://a.com") is None
        await store.robots_put("http://a.com", 5.0, None)
        await store.robots_put("http://b.com", 6.0, "User-agent: *\n")
    async with await SQLiteStore.open(store_path, "s") as store:
        assert await store.robots_get("http://a.com") == (5.0, None)
        assert await store.robots_get("http://b.com") == (6.0, "User-agent: *\n")
