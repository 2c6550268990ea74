"""Name lookups: the cache (TTLs, failures, one lookup per name at a time, lookups in flight
bounded), the c-ares resolver against a DNS server the test runs, and a crawl of named hosts
with the address guard still checking the address each connection goes to."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiohttp import web

from crawler import Crawler, Request, Response, Settings, Spider
from crawler.errors import BlockedAddress, ConfigError, FetchConnectError
from crawler.net.addresses import AddressGuard
from crawler.net.dns import (
    MIN_TTL,
    NEGATIVE_TTL,
    SYSTEM_TTL,
    AsyncResolver,
    DnsCache,
    NameNotFound,
    SystemResolver,
)
from crawler.net.fetcher import Fetcher
from tests.helpers import LocalDns, stored_items
from tests.sites import serve


class Names:
    """A resolver of made-up names, counting its lookups; a name maps to (addresses, TTL)."""

    def __init__(self, names: dict[str, tuple[list[str], float]]) -> None:
        self.names = names
        self.asked: list[str] = []

    async def __call__(self, host: str) -> tuple[list[str], float]:
        self.asked.append(host)
        await asyncio.sleep(0)
        if host not in self.names:
            raise NameNotFound("Domain name not found")
        return self.names[host]


class Time:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_answers_are_kept_for_their_ttl() -> None:
    names = Names({"a.test": (["192.0.2.1"], 60), "b.test": (["192.0.2.2"], 0)})
    now = Time()
    dns = DnsCache(names, clock=now)
    assert await dns.resolve("a.test") == (["192.0.2.1"], 1060.0)
    now.t += 59
    assert (await dns.resolve("a.test"))[0] == ["192.0.2.1"]
    assert names.asked == ["a.test"]
    now.t += 2  # past its TTL: asked again, and the new answer used
    names.names["a.test"] = (["192.0.2.9"], 60)
    assert (await dns.resolve("a.test"))[0] == ["192.0.2.9"]
    # a TTL of 0 is kept MIN_TTL: the requests of one page share one lookup
    assert (await dns.resolve("b.test"))[1] == now.t + MIN_TTL
    await dns.resolve("b.test")
    assert names.asked == ["a.test", "a.test", "b.test"]
    assert (dns.stats.lookups, dns.stats.cached, dns.stats.failed) == (3, 2, 0)


async def test_a_name_that_does_not_resolve_is_not_asked_again_at_once() -> None:
    names = Names({})
    now = Time()
    dns = DnsCache(names, clock=now)
    for _ in range(3):
        with pytest.raises(OSError, match="not found"):
            await dns.resolve("gone.test")
    assert names.asked == ["gone.test"]
    now.t += NEGATIVE_TTL + 1
    names.names["gone.test"] = (["192.0.2.3"], 60)
    assert (await dns.resolve("gone.test"))[0] == ["192.0.2.3"]
    assert (dns.stats.lookups, dns.stats.failed) == (2, 1)


async def test_a_lookup_that_failed_on_its_way_is_not_kept() -> None:
    calls = 0

    async def flaky(host: str) -> tuple[list[str], float]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("Timeout while contacting DNS servers")
        return ["192.0.2.1"], 60

    dns = DnsCache(flaky)
    with pytest.raises(OSError, match="Timeout"):
        await dns.resolve("a.test")
    assert (await dns.resolve("a.test"))[0] == ["192.0.2.1"]  # asked again at once
    assert (dns.stats.lookups, dns.stats.failed) == (2, 1)


async def test_requests_waiting_for_one_name_share_its_lookup() -> None:
    names = Names({"a.test": (["192.0.2.1"], 60)})
    dns = DnsCache(names)
    answers = await asyncio.gather(*(dns.resolve("a.test") for _ in range(20)))
    assert {tuple(a) for a, _ in answers} == {("192.0.2.1",)}
    assert names.asked == ["a.test"]
    assert (dns.stats.lookups, dns.stats.cached) == (1, 19)


async def test_a_cancelled_waiter_leaves_the_lookup_to_the_others() -> None:
    release = asyncio.Event()

    async def slow(host: str) -> tuple[list[str], float]:
        await release.wait()
        return ["192.0.2.1"], 60

    dns = DnsCache(slow)
    first = asyncio.ensure_future(dns.resolve("a.test"))
    second = asyncio.ensure_future(dns.resolve("a.test"))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert (await second)[0] == ["192.0.2.1"]
    assert first.cancelled()


async def test_lookups_in_flight_are_bounded() -> None:
    in_flight = peak = 0
    release = asyncio.Event()

    async def lookup(host: str) -> tuple[list[str], float]:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await release.wait()
        in_flight -= 1
        return ["192.0.2.1"], 60

    dns = DnsCache(lookup, max_in_flight=3)
    tasks = [asyncio.ensure_future(dns.resolve(f"h{i}.test")) for i in range(10)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert in_flight == 3
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 3
    assert dns.stats.lookups == 10


async def test_the_c_ares_resolver_asks_the_servers_it_is_given() -> None:
    dns = await LocalDns.start({"shop.test": ("127.0.0.5", 42)})
    resolver = AsyncResolver([dns.server], timeout=2)
    try:
        assert await resolver("shop.test") == (["127.0.0.5"], 42.0)
        with pytest.raises(NameNotFound, match="not found"):
            await resolver("nowhere.test")
    finally:
        await resolver.close()
        dns.close()


@pytest.fixture
async def named_site() -> tuple[LocalDns, dict[str, int], list[str]]:
    """Two loopback addresses serving one site (each page says which address it was asked
    on; every answer closes its connection) and a DNS server the test points names at."""
    connected: list[str] = []

    async def page(request: web.Request) -> web.Response:
        assert request.transport is not None
        local = request.transport.get_extra_info("sockname")[0]
        connected.append(local)
        if request.path == "/robots.txt":
            return web.Response(text="User-agent: *\nAllow: /\n")
        links = "".join(f'<a href="/p{i}">p</a>' for i in range(3)) if request.path == "/" else ""
        return web.Response(
            text=f"<html><title>{local}</title><body>{links}</body></html>",
            content_type="text/html",
            headers={"Connection": "close"},
        )

    runners: list[web.AppRunner] = []
    ports = await serve(page, ["127.0.0.1"], runners)
    port = ports["127.0.0.1"]
    runner = web.AppRunner(runners[0].app, access_log=None)
    await runner.setup()
    runners.append(runner)
    await web.TCPSite(runner, "127.0.0.3", port).start()
    dns = await LocalDns.start({})
    try:
        yield dns, {"port": port}, connected
    finally:
        dns.close()
        for r in runners:
            await r.cleanup()


async def test_connections_go_to_the_checked_address_of_a_fresh_answer(
    named_site: tuple[LocalDns, dict[str, int], list[str]],
) -> None:
    dns, ports, connected = named_site
    port = ports["port"]
    # TTL 0: c-ares keeps no copy of its own (it keeps answers for their TTL, on real time)
    dns.names.update({"shop.test": ("127.0.0.1", 0), "evil.test": ("127.0.0.1", 60)})
    now = Time()
    cache = DnsCache(AsyncResolver([dns.server], timeout=2), clock=now)
    guard = AddressGuard(dns=cache, trusted_hosts=["shop.test"])
    async with Fetcher(
        user_agent="t", timeout=5, max_size=100_000, max_redirects=0, max_connections=4, guard=guard
    ) as fetcher:
        await fetcher.fetch(f"http://shop.test:{port}/p1")
        # the name moves; its answer expires (TTL 0, kept MIN_TTL) and the new one is used
        dns.names["shop.test"] = ("127.0.0.3", 60)
        await fetcher.fetch(f"http://shop.test:{port}/p2")
        now.t += MIN_TTL + 1
        await fetcher.fetch(f"http://shop.test:{port}/p3")
        assert connected == ["127.0.0.1", "127.0.0.1", "127.0.0.3"]
        # a name nobody named that resolves to a loopback address is refused, not connected
        with pytest.raises(BlockedAddress):
            await fetcher.fetch(f"http://evil.test:{port}/")
        with pytest.raises(FetchConnectError, match=r"cannot resolve nowhere\.test"):
            await fetcher.fetch(f"http://nowhere.test:{port}/")
        assert len(connected) == 3
        stats = fetcher.dns_stats
        assert (stats.lookups, stats.cached, stats.failed) == (4, 1, 1)


class Shop(Spider):
    name = "shop"

    async def parse(self, response: Response) -> object:
        title = response.css_first("title")
        yield {"url": response.url, "title": title.text() if title else None}
        for link in response.css("a"):
            yield Request(response.urljoin(link.attributes["href"] or ""))


async def test_a_crawl_of_named_hosts_resolves_each_name_once(
    named_site: tuple[LocalDns, dict[str, int], list[str]], store_path: Path
) -> None:
    dns, ports, connected = named_site
    dns.names["shop.test"] = ("127.0.0.3", 300)
    spider = Shop()
    spider.start_urls = [f"http://shop.test:{ports['port']}/"]
    settings = Settings().merge({"dns_servers": dns.server, "retry_backoff": 0.0})
    stats = await Crawler(spider, settings, store_path=store_path).run()
    assert stats.pages == 4
    assert stats.failed == 0
    titles = {json.loads(item)["title"] for item in await stored_items(store_path)}
    assert titles == {"127.0.0.3"}
    assert set(connected) == {"127.0.0.3"}
    assert len(connected) == 5
    assert dns.queries == ["shop.test"]
    assert (stats.dns.lookups, stats.dns.failed) == (1, 0)
    assert stats.dns.cached >= 4


async def test_the_system_resolver_answers_from_the_operating_system() -> None:
    addresses, ttl = await SystemResolver()("localhost")
    assert "127.0.0.1" in addresses
    assert ttl == SYSTEM_TTL


async def test_the_system_resolver_tells_a_missing_name_from_a_failed_lookup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    loop = asyncio.get_running_loop()
    answers = iter([socket.EAI_NONAME, socket.EAI_AGAIN])

    async def failing(*args: object, **kwargs: object) -> object:
        code = next(answers)
        raise socket.gaierror(code, "no" if code == socket.EAI_NONAME else "try again")

    monkeypatch.setattr(loop, "getaddrinfo", failing)
    with pytest.raises(NameNotFound):
        await SystemResolver()("gone.test")
    with pytest.raises(OSError, match="try again") as failed:
        await SystemResolver()("busy.test")
    assert not isinstance(failed.value, NameNotFound)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("dns_resolver", "bind"),
        ("dns_servers", "dns.example"),
        ("dns_servers", "127.0.0.1:99999"),
        ("dns_concurrency", "0"),
    ],
)
def test_bad_dns_settings_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings().merge({name: value})


def test_dns_servers_take_addresses_and_ports() -> None:
    settings = Settings().merge({"dns_servers": "127.0.0.1:5353, ::1, [::1]:53"})
    assert settings.dns_servers == ("127.0.0.1:5353", "::1", "[::1]:53")
    with pytest.raises(ConfigError, match="dns_servers' is for dns_resolver=async"):
        settings.merge({"dns_resolver": "system"})


async def test_a_missing_aiodns_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "aiodns", None)
    with pytest.raises(ConfigError, match="dns_resolver=system"):
        await AsyncResolver()("shop.test")
