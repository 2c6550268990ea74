"""The SSRF guard: public crawls never reach internal addresses; connections go to the pin."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from crawler import Crawler, Request, Response, Settings, Spider
from crawler.net.addresses import AddressGuard, BlockedAddress, is_public
from crawler.net.fetcher import Fetcher
from tests.helpers import stored_failures

PUBLIC = "93.184.215.14"
DNS = {
    "public.example": [PUBLIC],
    "internal.example": ["10.1.2.3"],
    "mixed.example": ["10.0.0.5", "93.184.215.20"],
}


async def fake_dns(host: str) -> list[str]:
    if host not in DNS:
        raise OSError(f"unknown host {host}")
    return DNS[host]


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:2800:220:1::1", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::ffff:127.0.0.1", False),
    ],
)
def test_is_public(address: str, public: bool) -> None:
    assert is_public(address) is public


class AnyLink(Spider):
    name = "ssrf"
    start_urls = ["http://public.example/"]
    allowed_domains: list[str] = []  # any host: only the guard stands in the way

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url}
        for url in response.links():
            yield Request(url)


INTERNAL = [
    "http://127.0.0.1/admin",
    "http://10.0.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/",
    "http://internal.example/",
]


def site() -> tuple[Counter[str], httpx.MockTransport]:
    seen: Counter[str] = Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.url.host] += 1
        if request.url.path == "/redirect":
            return httpx.Response(302, headers={"Location": "http://127.0.0.1/via-redirect"})
        links = "".join(
            f'<a href="{u}">x</a>' for u in [*INTERNAL, "/redirect", "http://mixed.example/"]
        )
        return httpx.Response(200, html=f"<html><body>{links}</body></html>")

    return seen, httpx.MockTransport(handler)


async def test_a_public_crawl_never_reaches_internal_addresses(store_path: Path) -> None:
    seen, transport = site()
    settings = Settings(obey_robots=True, max_retries=0)
    await Crawler(
        AnyLink(), settings, store_path=store_path, transport=transport, resolver=fake_dns
    ).run()
    assert set(seen) == {"public.example", "mixed.example"}  # robots.txt included
    failures = await stored_failures(store_path, error="blocked_address")
    blocked = {f["url"] for f in failures}
    redirects = {"http://public.example/redirect", "http://mixed.example/redirect"}
    assert blocked == {*INTERNAL, *redirects}  # a redirect hop is checked too
    (message,) = [
        f["message"] for f in failures if f["url"] == "http://169.254.169.254/latest/meta-data/"
    ]
    assert message.startswith("169.254.169.254 is not a public address")
    assert "allow_private_networks=true" in message  # names what lifts the rule


async def test_private_networks_can_be_allowed_explicitly(store_path: Path) -> None:
    seen, transport = site()
    settings = Settings(obey_robots=False, max_retries=0, allow_private_networks=True)
    await Crawler(
        AnyLink(), settings, store_path=store_path, transport=transport, resolver=fake_dns
    ).run()
    assert {"127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "internal.example"} <= set(seen)


async def test_addresses_are_pinned_and_checked_once() -> None:
    answers = [["93.184.215.14"], ["127.0.0.1"]]  # a rebinding DNS server
    calls = 0

    async def rebinding(host: str) -> list[str]:
        nonlocal calls
        calls += 1
        return answers[min(calls - 1, 1)]

    guard = AddressGuard(resolve=rebinding)
    assert await guard.check("rebind.example", "http://rebind.example/") == "93.184.215.14"
    assert await guard.check("rebind.example", "http://rebind.example/") == "93.184.215.14"
    assert calls == 1
    assert guard.pinned("rebind.example") == ["93.184.215.14"]
    fresh = AddressGuard(resolve=rebinding)
    with pytest.raises(BlockedAddress):
        await fresh.check("rebind.example", "http://rebind.example/")


async def test_named_hosts_on_local_addresses_are_crawlable_but_only_them() -> None:
    guard = AddressGuard(resolve=fake_dns, trusted_hosts=["internal.example", "127.0.0.3"])
    assert await guard.check("internal.example", "u") == "10.1.2.3"
    assert await guard.check("127.0.0.3", "u") == "127.0.0.3"
    with pytest.raises(BlockedAddress, match="allow_private_networks"):
        await guard.check("127.0.0.5", "u")  # another local address is still off limits
    with pytest.raises(BlockedAddress):  # a subdomain of a named host is not named
        await AddressGuard(
            resolve=lambda host: fake_dns("internal.example"), trusted_hosts=["example"]
        ).check("internal.example", "u")
    with pytest.raises(BlockedAddress):
        await AddressGuard(resolve=fake_dns, trusted_hosts=["public.example"]).check(
            "10.0.0.1", "u"
        )


async def test_real_connections_go_to_the_pinned_address() -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"host header {request.host}")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    server = web.TCPSite(runner, "127.0.0.1", 0)
    await server.start()
    assert server._server is not None
    port = server._server.sockets[0].getsockname()[1]

    async def resolve(host: str) -> list[str]:
        return ["127.0.0.1"]  # a name the system resolver has never heard of

    guard = AddressGuard(resolve=resolve, trusted_hosts=["made-up.test"])
    try:
        async with Fetcher(
            user_agent="t",
            timeout=5,
            max_size=10_000,
            max_redirects=0,
            max_connections=2,
            guard=guard,
        ) as fetcher:
            page = await fetcher.fetch(f"http://made-up.test:{port}/")
        assert page.body == f"host header made-up.test:{port}".encode()
    finally:
        await runner.cleanup()
