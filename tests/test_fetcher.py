from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from crawler import (
    FetchConnectError,
    FetchTimeout,
    HTTPStatusError,
    RedirectOutOfScope,
    ResponseTooLarge,
    TooManyRedirects,
)
from crawler.fetcher import Fetcher


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


async def test_redirects_are_followed_and_checked_against_scope() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        routes = {"/a": "/b", "/b": "http://a.com/c#frag", "/out": "http://evil.com/"}
        if request.url.path in routes:
            return httpx.Response(301, headers={"Location": routes[request.url.path]})
        return httpx.Response(200, text="end")

    in_scope = lambda url: url.startswith("http://a.com/")  # noqa: E731
    async with fetcher(handler) as f:
        page = await f.fetch("http://a.com/a", allow=in_scope)
        assert (page.url, page.redirects) == ("http://a.com/c", 2)
        with pytest.raises(RedirectOutOfScope, match=r"evil\.com"):
            await f.fetch("http://a.com/out", allow=in_scope)


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
