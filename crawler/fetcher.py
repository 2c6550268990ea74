"""Fetching: owns the one shared HTTP session. Follows redirects itself (each hop checked against
the scope), enforces the size and time caps, and translates httpx errors into FetchError.

No other room imports httpx's exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType

import httpx

from .addresses import AddressGuard, GuardedTransport, pinned_transport
from .decoding import ACCEPT_ENCODING, DecodingError, decoder_for
from .errors import (
    ContentDecodingError,
    FetchConnectError,
    FetchError,
    FetchTimeout,
    HTTPStatusError,
    InvalidURL,
    RedirectOutOfScope,
    ResponseTooLarge,
    TooManyRedirects,
)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@dataclass(frozen=True, slots=True)
class Fetched:
    """A final (non-redirect, status < 400) response: `url` is where the redirects ended."""

    url: str
    status: int
    headers: httpx.Headers
    body: bytes
    redirects: int = 0


class Fetcher:
    """GET pages over one pooled httpx client. Use as an async context manager.

    With a `guard`, every request's host is checked (and its address pinned) before any
    connection: see addresses.py. `transport` replaces the network (tests).
    """

    def __init__(
        self,
        *,
        user_agent: str,
        timeout: float,
        max_size: int,
        max_redirects: int,
        max_connections: int,
        connect_timeout: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        guard: AddressGuard | None = None,
    ) -> None:
        self._timeout = timeout
        self._max_size = max_size
        self._max_redirects = max_redirects
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        if guard is not None:
            transport = (
                GuardedTransport(transport, guard)
                if transport is not None
                else pinned_transport(guard, limits)
            )
        # The transport is called directly, not through httpx.AsyncClient: the client's
        # per-request layers (URL merging, auth, redirects, event hooks, a cookie jar parsed
        # on every response) were a fifth of the crawler's CPU, and we follow redirects here.
        self._transport = transport or httpx.AsyncHTTPTransport(limits=limits)
        self._headers = httpx.Headers(
            {"User-Agent": user_agent, "Accept": _ACCEPT, "Accept-Encoding": ACCEPT_ENCODING}
        )
        connect = min(connect_timeout or timeout, timeout)
        self._extensions = {
            "timeout": httpx.Timeout(timeout, connect=connect).as_dict(),
        }
        self._cookies = httpx.Cookies()

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    @contextlib.asynccontextmanager
    async def _get(self, url: str) -> AsyncIterator[httpx.Response]:
        """One GET, its body not read yet; cookies kept across requests like a browser."""
        request = httpx.Request("GET", url, headers=self._headers, extensions=self._extensions)
        if self._cookies.jar:
            self._cookies.set_cookie_header(request)
        response = await self._transport.handle_async_request(request)
        response.request = request
        try:
            if "set-cookie" in response.headers:
                self._cookies.extract_cookies(response)
            yield response
        finally:
            await response.aclose()

    async def fetch(
        self,
        url: str,
        *,
        redirect: Callable[[str], str | None] | None = None,
        max_size: int | None = None,
        truncate: bool = False,
    ) -> Fetched:
        """GET `url`, following redirects. `redirect(target)` says where a redirect may go:
        the URL to fetch for `target` (its canonical form), or None when it is out of scope;
        it may raise InvalidURL. Without it, redirect targets are fetched as they are.

        Raises FetchTimeout (the whole request, redirects included, exceeded the timeout),
        FetchConnectError, ResponseTooLarge (the decoded body is over `max_size`, default the
        fetcher's cap; never decoded further than that), ContentDecodingError,
        TooManyRedirects (too many hops, or a loop), RedirectOutOfScope, HTTPStatusError
        (status >= 400, with Retry-After; the body is not read), InvalidURL or FetchError;
        `sent` on the error says whether a request went out. With `truncate`, a body over
        `max_size` is cut there instead of failing.
        """
        limit = self._max_size if max_size is None else max_size
        try:
            async with asyncio.timeout(self._timeout):
                return await self._follow(url, redirect, limit, truncate)
        except TimeoutError:
            raise FetchTimeout(url, f"no complete response within {self._timeout:g} s") from None
        except httpx.TimeoutException as exc:
            cause = exc.__cause__
            if cause is not None and not isinstance(cause, TimeoutError):
                # the aiohttp transport reports every lost connection as a connect timeout
                raise FetchConnectError(url, f"{type(cause).__name__}: {cause}") from exc
            raise FetchTimeout(url, f"timed out: {type(exc).__name__}") from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError) as exc:
            raise FetchConnectError(url, f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise InvalidURL(url, str(exc)) from exc
        except httpx.HTTPError as exc:
            raise FetchError(url, f"{type(exc).__name__}: {exc}") from exc

    async def _follow(
        self, url: str, redirect: Callable[[str], str | None] | None, limit: int, truncate: bool
    ) -> Fetched:
        seen = {url}
        for hop in range(self._max_redirects + 1):
            try:
                async with self._get(url) as response:
                    status = response.status_code
                    if status in _REDIRECTS and "location" in response.headers:
                        location = response.headers["location"]
                        target = str(response.url.join(location)).split("#")[0]
                        allowed = redirect(target) if redirect is not None else target
                        if allowed is None:
                            raise RedirectOutOfScope(url, f"redirected out of scope to {target}")
                        if allowed in seen:
                            raise TooManyRedirects(url, f"redirect loop back to {allowed}")
                        seen.add(allowed)
                        url = allowed
                        continue
                    if status >= 400:
                        raise HTTPStatusError(url, status, retry_after(response.headers))
                    body = await _read_capped(response, url, limit, truncate)
                    return Fetched(str(response.url), status, response.headers, body, hop)
            except FetchError as exc:
                exc.sent = exc.sent or hop > 0  # refused before a later hop: earlier ones went out
                raise
        raise TooManyRedirects(url, f"more than {self._max_redirects} redirects")


async def _read_capped(
    response: httpx.Response, url: str, limit: int, truncate: bool = False
) -> bytes:
    """The decoded body, read raw and decoded here so that no step holds more than ~`limit`;
    over `limit`, ResponseTooLarge, or with `truncate` the first `limit` bytes."""
    declared = response.headers.get("content-length", "")
    encoding = response.headers.get("content-encoding")
    if not truncate and not encoding and declared.isdigit() and int(declared) > limit:
        raise ResponseTooLarge(url, f"Content-Length {declared} exceeds {limit} bytes")
    if response.is_stream_consumed:  # built in memory (mock transports): decoded already
        if len(response.content) > limit and not truncate:
            raise ResponseTooLarge(url, f"body exceeds {limit} bytes")
        return response.content[:limit]
    try:
        decoder = decoder_for(encoding)
        chunks: list[bytes] = []
        size = 0
        async for raw in response.aiter_raw():
            chunk = decoder.decode(raw, limit - size)
            size += len(chunk)
            if size > limit:
                if truncate:
                    chunks.append(chunk[: len(chunk) - (size - limit)])
                    return b"".join(chunks)
                raise ResponseTooLarge(url, f"body exceeds {limit} bytes")
            chunks.append(chunk)
        tail = decoder.flush(limit - size)
    except DecodingError as exc:
        raise ContentDecodingError(url, f"cannot decode body: {exc}") from None
    if size + len(tail) > limit and not truncate:
        raise ResponseTooLarge(url, f"body exceeds {limit} bytes")
    chunks.append(tail[: limit - size])
    return b"".join(chunks)


def retry_after(headers: httpx.Headers, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP-date), or None."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
