import email.utils
import gzip
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable

import brotli
import httpx
import pytest

from crawler import (
    ContentDecodingError,
    FetchConnectError,
    FetchTimeout,
    HTTPStatusError,
    RedirectOutOfScope,
    ResponseTooLarge,
    TooManyRedirects,
)
from crawler.net.fetcher import Fetcher, retry_after


def fetcher(handler: Callable[[httpx.Request], httpx.Response], **kw: int) -> Fetcher:
    options = {"timeout": 5.0, "max_size": 1000, "max_redirects": 3, "max_connections": 4, **kw}
    return Fetcher(user_agent="test-bot/1", transport=httpx.MockTransport(handler), **options)  # type: ignore[arg-type]


async def test_fetch_sends_user_agent_and_returns_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, html="<p>hi</p>")

    async with fetcher(handler) as f:
        page = await f.fetch("http://a.com/x")
    assert page.body == b"<p>hi</p>"
    assert page.status == 200
    assert page.url == "http://a.com/x"
    assert seen[0].headers["user-agent"] == "test-bot/1"


async def test_cookies_are_kept_per_host_like_a_browser() -> None:
    sent: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        sent[f"{request.url.host}{request.url.path}"] = request.headers.get("cookie")
        if request.url.path == "/login":  # set on a redirect hop, as logins do
            return httpx.Response(
                302, headers={"Location": "/home", "Set-Cookie": "session=abc; Path=/"}
            )
        return httpx.Response(200, text="ok")

    async with fetcher(handler) as f:
        await f.fetch("http://a.com/first")
        await f.fetch("http://a.com/login")
        await f.fetch("http://a.com/later")
        await f.fetch("http://b.com/other")
    assert sent == {
        "a.com/first": None,
        "a.com/login": None,
        "a.com/home": "session=abc",
        "a.com/later": "session=abc",
        "b.com/other": None,
    }


async def test_redirects_are_followed_and_checked_against_scope() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        routes = {"/a": "/b", "/b": "http://a.com/c#frag", "/out": "http://evil.com/"}
        if request.url.path in routes:
            return httpx.Response(301, headers={"Location": routes[request.url.path]})
        return httpx.Response(200, text="end")

    in_scope = lambda url: url.startswith("http://a.com/")  # noqa: E731
    async with fetcher(handler) as f:
        page = await f.fetch("http://a.com/a", redirect=lambda url: url if in_scope(url) else None)
        assert (page.url, page.redirects) == ("http://a.com/c", 2)
        with pytest.raises(RedirectOutOfScope, match=r"evil\.com"):
            await f.fetch("http://a.com/out", redirect=lambda url: url if in_scope(url) else None)


async def test_redirect_loops_and_long_chains_fail() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/loop"):
            return httpx.Response(
                302, headers={"Location": "/loop2" if path == "/loop" else "/loop"}
            )
        n = int(path.strip("/") or 0)
        return httpx.Response(302, headers={"Location": f"/{n + 1}"})

    async with fetcher(handler) as f:
        with pytest.raises(TooManyRedirects, match="loop"):
            await f.fetch("http://a.com/loop")
        with pytest.raises(TooManyRedirects, match="more than 3"):
            await f.fetch("http://a.com/0")


async def test_size_cap_from_header_and_from_stream() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/declared":
            return httpx.Response(200, content=b"x" * 2000)

        async def chunks() -> AsyncIterator[bytes]:
            yield b"x" * 600
            yield b"x" * 600

        return httpx.Response(200, content=chunks())  # no Content-Length

    async with fetcher(handler) as f:
        with pytest.raises(ResponseTooLarge, match="Content-Length 2000"):
            await f.fetch("http://a.com/declared")
        with pytest.raises(ResponseTooLarge, match="body exceeds 1000"):
            await f.fetch("http://a.com/streamed")


async def test_errors_are_translated() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/404":
            return httpx.Response(404)
        if request.url.path == "/503":
            return httpx.Response(503)
        if request.url.path == "/slow":
            raise httpx.ReadTimeout("slow", request=request)
        raise httpx.ConnectError("refused", request=request)

    async with fetcher(handler) as f:
        with pytest.raises(HTTPStatusError) as not_found:
            await f.fetch("http://a.com/404")
        assert (not_found.value.status, not_found.value.transient) == (404, False)
        with pytest.raises(HTTPStatusError) as unavailable:
            await f.fetch("http://a.com/503")
        assert unavailable.value.transient
        with pytest.raises(FetchTimeout):
            await f.fetch("http://a.com/slow")
        with pytest.raises(FetchConnectError, match="refused"):
            await f.fetch("http://a.com/down")


def test_retry_after_is_seconds_or_an_http_date() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 120, usegmt=True)
    assert retry_after(httpx.Headers({"Retry-After": "30"}), now) == 30.0
    assert retry_after(httpx.Headers({"Retry-After": date}), now) == pytest.approx(120.0)
    assert retry_after(httpx.Headers({"Retry-After": "soon"}), now) is None
    assert retry_after(httpx.Headers({}), now) is None
    past = email.utils.formatdate(now - 50, usegmt=True)
    assert retry_after(httpx.Headers({"Retry-After": past}), now) == 0.0


async def test_429_carries_its_retry_after() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "7"})

    async with fetcher(handler) as f:
        with pytest.raises(HTTPStatusError) as info:
            await f.fetch("http://a.com/")
    assert (info.value.status, info.value.retry_after) == (429, 7.0)


def _bomb(coding: str, size: int) -> bytes:
    zeros = b"\0" * size
    if coding == "gzip":
        return gzip.compress(zeros, 6)
    if coding == "deflate":
        return zlib.compress(zeros, 6)
    if coding == "br":
        return bytes(brotli.compress(zeros, quality=5))
    raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return raw.compress(zeros) + raw.flush()


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate", "br"])
async def test_compression_bombs_are_stopped_with_little_memory(coding: str) -> None:
    cap = 256 * 1024
    bomb = _bomb(coding, 128 * cap)  # 32 MiB of zeros, a few tens of KB compressed

    def handler(request: httpx.Request) -> httpx.Response:
        async def stream() -> AsyncIterator[bytes]:
            for i in range(0, len(bomb), 65536):
                yield bomb[i : i + 65536]

        header = "deflate" if coding == "raw-deflate" else coding
        return httpx.Response(200, headers={"Content-Encoding": header}, content=stream())

    async with fetcher(handler, max_size=cap) as f:
        tracemalloc.start()
        try:
            with pytest.raises(ResponseTooLarge):
                await f.fetch("http://a.com/bomb")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 4 * cap, peak  # never near the 32 MiB the bomb inflates to


async def test_compressed_bodies_within_the_cap_are_decoded() -> None:
    page = b"<html>" + b"hello " * 1000 + b"</html>"

    def handler(request: httpx.Request) -> httpx.Response:
        coding = request.url.path.strip("/")
        body = {
            "gzip": gzip.compress(page),
            "deflate": zlib.compress(page),
            "br": brotli.compress(page),
        }.get(coding, b"\x1f\x8bcorrupt")

        async def stream() -> AsyncIterator[bytes]:
            yield body

        return httpx.Response(200, headers={"Content-Encoding": coding or "gzip"}, content=stream())

    async with fetcher(handler, max_size=100_000) as f:
        for coding in ("gzip", "deflate", "br"):
            assert (await f.fetch(f"http://a.com/{coding}")).body == page
        with pytest.raises(ContentDecodingError):
            await f.fetch("http://a.com/")


async def test_the_network_path_sends_what_the_mock_path_sends() -> None:
    """Without a transport handed in, requests go straight through aiohttp: the same headers
    (the request's over the crawl's), the jar's cookies (unless the request names its own),
    the body, and the URL byte for byte."""
    from aiohttp import web

    from crawler.net.addresses import AddressGuard
    from tests.sites import serve

    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append((request.method, request.raw_path, dict(request.headers), await request.read()))
        if request.path == "/login":
            return web.Response(status=302, headers={"Location": "/home", "Set-Cookie": "s=1"})
        return web.Response(text="ok")

    app_runners: list[web.AppRunner] = []
    ports = await serve(handler, ["127.0.0.1"], app_runners)
    app_runners[0].app.router.add_route("POST", "/{tail:.*}", handler)
    base = f"http://127.0.0.1:{ports['127.0.0.1']}"
    guard = AddressGuard(trusted_hosts=["127.0.0.1"])
    try:
        async with Fetcher(
            user_agent="test-bot/1",
            timeout=5,
            max_size=1000,
            max_redirects=3,
            max_connections=2,
            guard=guard,
        ) as f:
            await f.fetch(f"{base}/login")
            await f.fetch(f"{base}/a%7e[b]?q=%", headers={"User-Agent": "mine", "X-Y": "z"})
            await f.fetch(f"{base}/own", headers={"cookie": "t=2"})
            page = await f.fetch(f"{base}/post", method="POST", body=b"k=v")
    finally:
        for runner in app_runners:
            await runner.cleanup()
    assert page.body == b"ok"
    assert page.url == f"{base}/post"
    login, home, quoted, own, post = seen
    assert (login[0], login[1], home[1]) == ("GET", "/login", "/home")
    assert login[2]["User-Agent"] == "test-bot/1"
    assert "Cookie" not in login[2]
    assert home[2]["Cookie"] == "s=1"
    assert quoted[1] == "/a%7e[b]?q=%"
    assert (quoted[2]["User-Agent"], quoted[2]["X-Y"], quoted[2]["Cookie"]) == ("mine", "z", "s=1")
    assert own[2]["Cookie"] == "t=2"
    assert (post[0], post[3], post[2]["Content-Length"]) == ("POST", b"k=v", "3")
