"""Fetching: owns the one shared HTTP session. Follows redirects itself (each hop checked against
the scope), enforces the size and time caps, and translates httpx errors into FetchError.

No other room imports httpx's exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import functools
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import httpx

from ..errors import (
    ConfigError,
    ContentDecodingError,
    FetchConnectError,
    FetchError,
    FetchTimeout,
    HTTPStatusError,
    InvalidURL,
    ProxyError,
    RedirectOutOfScope,
    ResponseTooLarge,
    TooManyRedirects,
)
from ..records import Exchange
from ..stats import BACKEND, bump
from ..urls import join
from .addresses import AddressGuard, GuardedTransport, PinnedSession, pinned_transport
from .backends import CurlSession, Dispatch, Session, trust
from .cookies import Jars
from .decoding import ACCEPT_ENCODING, DecodingError, decoder_for
from .dns import DnsStats
from .proxies import PROXY, ProxyPool, proxy_name

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: Redirects after which a browser sends a GET without a body (303 always, 301 and 302 for a
#: POST); 307 and 308 repeat the request as it was.
_TO_GET = {301: frozenset({"POST"}), 302: frozenset({"POST"}), 303: None}
_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


#: The exchanges of the page being processed, when the crawl archives them (`recording`).
_exchanges: ContextVar[list[Exchange] | None] = ContextVar("crawler_exchanges", default=None)


class recording:
    """Within the block, every fetch of this task (and of the tasks it starts) appends its
    exchanges to `exchanges` (but downloads streamed `into` a file); None: nothing is kept,
    and the block costs nothing (a page's path when the crawl archives nothing)."""

    __slots__ = ("_exchanges", "_token")

    def __init__(self, exchanges: list[Exchange] | None) -> None:
        self._exchanges = exchanges
        self._token: Token[list[Exchange] | None] | None = None

    def __enter__(self) -> list[Exchange] | None:
        if self._exchanges is not None:
            self._token = _exchanges.set(self._exchanges)
        return self._exchanges

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _exchanges.reset(self._token)


@dataclass(frozen=True, slots=True)
class Fetched:
    """A final (non-redirect) response: `url` is where the redirects ended, `method` the
    method of that last request (a redirect may have turned a POST into a GET)."""

    url: str
    status: int
    headers: httpx.Headers
    body: bytes
    redirects: int = 0
    method: str = "GET"
    #: Answered by the HTTP cache (no request went out for the last hop).
    cached: bool = False


class Fetcher:
    """Requests over one pooled HTTP session. Use as an async context manager.

    With a `guard`, every request's host is checked (and its address pinned) before any
    connection: see addresses.py. `transport` replaces the network (tests). `jars` are the
    crawl's cookie jars, one per session (see cookies.py); `proxies` chooses the proxy of a
    request that names none (see proxies.py). With `cache_dir`, responses are kept in an HTTP
    cache there (hishel's SQLite storage) and answered from it: every successful GET for
    `cache_ttl` seconds (None: as long as it is kept), or by HTTP's caching rules with
    `cache_rfc`. A `cache_recording` folder can be committed to git as it is (a recording for
    crawler.testing.Replay); otherwise a .gitignore in it keeps it out.

    Requests go out through `backend` ("default", "http2" or "impersonate" with
    `impersonate_profile`: see backends.py), or the one a fetch names; https servers are
    verified against `ca_bundle` if given, else the system's CAs. With a `transport` (tests),
    every backend's requests go to it, their "fetch_backend" extension naming the backend.
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
        backend: str = "default",
        impersonate_profile: str = "chrome",
        ca_bundle: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        guard: AddressGuard | None = None,
        jars: Jars | None = None,
        proxies: ProxyPool | None = None,
        cache_dir: Path | None = None,
        cache_ttl: float | None = None,
        cache_rfc: bool = False,
        cache_recording: bool = True,
    ) -> None:
        self._timeout = timeout
        self._max_size = max_size
        self._max_redirects = max_redirects
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        headers = {"User-Agent": user_agent, "Accept": _ACCEPT, "Accept-Encoding": ACCEPT_ENCODING}
        self._headers = httpx.Headers(headers)
        #: The whole request runs under `timeout` (fetch): a read or pool timeout as long would
        #: only cost the network timers to set and cancel for every request.
        self._connect_timeout = min(connect_timeout or timeout, timeout)
        self._extensions = {"timeout": httpx.Timeout(None, connect=self._connect_timeout).as_dict()}
        self._backend = backend
        #: The backends' sessions, each made at its first request (the crawl's own backend at
        #: once, when it is not the default: a missing curl-cffi or a bad profile is said now).
        self._sessions: dict[str, Session] = {}
        self._transport: httpx.AsyncBaseTransport | None = None
        self._guard = guard
        context = trust(ca_bundle) if ca_bundle else None  # (None: aiohttp's, loaded beside)
        self._make: dict[str, Callable[[], Session]] = {}
        if guard is not None:
            self._make = {
                "default": lambda: PinnedSession(guard, limits, headers, context),
                **{
                    name: functools.partial(
                        CurlSession,
                        guard,
                        profile=impersonate_profile if name == "impersonate" else None,
                        headers=headers,
                        max_clients=max_connections,
                        ca_bundle=ca_bundle,
                        connect_timeout=self._connect_timeout,
                        extra=name,
                    )
                    for name in ("http2", "impersonate")
                },
            }
            if backend != "default":
                self._session(backend)
        #: An HTTP cache keeps a body only once it was read whole: error bodies are read too.
        self._caching = cache_dir is not None
        # The network straight through each backend's session: httpx's request and transport
        # layers (URL parsing, header merging, the request's preparation) are for the cache and
        # for the transports tests hand in.
        self._direct = guard is not None and transport is None and cache_dir is None
        #: The crawl's headers, as a web archive's request records list them.
        self._header_pairs = _raw(self._headers)
        if not self._direct:
            if guard is not None:
                if transport is not None:
                    transport = GuardedTransport(transport, guard)
                else:
                    transport = Dispatch(pinned_transport(guard, limits, context), self._session)
            # A transport is called directly, not through httpx.AsyncClient: the client's
            # per-request layers (URL merging, auth, redirects, event hooks, a cookie jar parsed
            # on every response) were a fifth of the crawler's CPU, and we follow redirects here.
            self._transport = transport or httpx.AsyncHTTPTransport(limits=limits)
            if cache_dir is not None:
                self._transport = _cached(
                    self._transport, cache_dir, cache_ttl, cache_rfc, cache_recording
                )
        self.jars = jars or Jars()
        self._proxies = proxies

    def _session(self, backend: str) -> Session:
        """The session of `backend`, made at its first use."""
        session = self._sessions.get(backend)
        if session is None:
            session = self._sessions[backend] = self._make[backend]()
        return session

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for session in self._sessions.values():
            await session.aclose()
        if self._transport is not None:
            await self._transport.aclose()
        if self._guard is not None:
            await self._guard.close()

    @property
    def dns_stats(self) -> DnsStats:
        """The name lookups made so far (none without a guard)."""
        return self._guard.dns_stats if self._guard is not None else DnsStats()

    @contextlib.asynccontextmanager
    async def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None,
        body: bytes | None,
        session: str,
        proxy: str | None,
        backend: str,
    ) -> AsyncIterator[httpx.Response]:
        """One request through `backend`, its body not read yet; the session's cookies sent
        and kept, like a browser's. `headers` go over the crawl's."""
        jar = self.jars.jar(session)
        request = None
        if self._direct:
            if jar.jar:
                headers = _with_cookies(jar, method, url, headers)
            response = await self._session(backend).send(
                method, url, headers, body, proxy, self._connect_timeout
            )
        else:
            assert self._transport is not None
            merged = self._headers
            if headers:
                merged = self._headers.copy()
                merged.update(headers)
            extensions: dict[str, Any] = self._extensions
            if proxy is not None or backend != "default":
                extensions = {**extensions, "proxy": proxy, "fetch_backend": backend}
            request = httpx.Request(
                method, url, headers=merged, content=body, extensions=extensions
            )
            if jar.jar:
                jar.set_cookie_header(request)
            response = await self._transport.handle_async_request(request)
            response.request = request
        try:
            if "set-cookie" in response.headers:
                if request is None:  # the jar reads the request's URL
                    response.request = httpx.Request(method, url)
                jar.extract_cookies(response)
                self.jars.changed(session)
            yield response
        finally:
            await response.aclose()

    async def fetch(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        cookies: Mapping[str, str] | None = None,
        session: str = "",
        proxy: str | None = None,
        backend: str | None = None,
        allow_status: frozenset[int] | tuple[int, ...] = (),
        error_body: bool = False,
        redirect: Callable[[str], str | None] | None = None,
        max_size: int | None = None,
        truncate: bool = False,
        into: Callable[[bytes], Awaitable[None]] | None = None,
        time_limit: float | None = None,
    ) -> Fetched:
        """Send `method` to `url` (GET by default) with `headers` over the crawl's and `body`,
        in the cookie jar of `session` (`cookies` are added to it for the URL's host first),
        through `proxy` if one is given, by `backend` (None: the fetcher's), following
        redirects as a browser does (a 303, or a 301/302 after a POST, becomes a GET without a
        body). `redirect(target)` says where a
        redirect may go: the URL to fetch for `target` (resolved as a browser resolves it), or
        None when it is out of scope; it may raise InvalidURL. Without it, redirect targets are
        fetched as they are. A status in `allow_status` is returned like a success; with
        `error_body`, an HTTPStatusError carries the response, its body read.

        Raises FetchTimeout (the whole request, redirects included, exceeded the timeout),
        FetchConnectError, ResponseTooLarge (the decoded body is over `max_size`, default the
        fetcher's cap; never decoded further than that), ContentDecodingError,
        TooManyRedirects (too many hops, or a loop), RedirectOutOfScope, HTTPStatusError
        (status >= 400, with Retry-After; the body is not read), InvalidURL or FetchError;
        `sent` on the error says whether a request went out. With `truncate`, a body over
        `max_size` is cut there instead of failing.

        With `into`, the final response's body (decoded, up to `max_size`) is handed to it
        chunk by chunk as it arrives, never held whole (a download), and `Fetched.body` is
        empty; a ResponseTooLarge may then come after some chunks. `time_limit`: seconds the
        whole request may take (default: the fetcher's).
        """
        if cookies:
            self.jars.set(session, httpx.URL(url).host, cookies)
        exchange = _Exchange(
            method,
            url,
            headers,
            body,
            session,
            proxy,
            backend or self._backend,
            frozenset(allow_status),
            error_body,
            redirect,
            self._max_size if max_size is None else max_size,
            truncate,
            into,
        )
        pool, chosen = self._proxies, None  # the crawl's proxy, told how it did
        if proxy is None and pool is not None:
            chosen = pool.choose(urlsplit(url).hostname or "", url)
            if chosen is not None:
                exchange = exchange._replace(proxy=chosen)
        try:
            try:
                async with asyncio.timeout(time_limit or self._timeout):
                    fetched = await self._follow(exchange)
            except TimeoutError:
                raise FetchTimeout(
                    url, f"no complete response within {time_limit or self._timeout:g} s"
                ) from None
            except httpx.TimeoutException as exc:
                cause = exc.__cause__
                if cause is not None and not isinstance(cause, TimeoutError):
                    # the aiohttp transport reports every lost connection as a connect timeout
                    raise FetchConnectError(url, f"{type(cause).__name__}: {cause}") from exc
                raise FetchTimeout(url, f"timed out: {type(exc).__name__}") from exc
            except httpx.ProxyError as exc:
                raise ProxyError(url, f"through the proxy: {exc}".rstrip(": ")) from exc
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                raise FetchConnectError(url, f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
                raise InvalidURL(url, str(exc)) from exc
            except httpx.HTTPError as exc:
                raise FetchError(url, f"{type(exc).__name__}: {exc}") from exc
        except FetchError as exc:
            failed = exc.message if isinstance(exc, ProxyError) else None  # else the host's
            _count_proxy(exchange.proxy, failed)
            if exchange.backend != "default":
                bump(f"{BACKEND}requests:{exchange.backend}")
                if not isinstance(exc, HTTPStatusError):
                    bump(f"{BACKEND}failed:{exchange.backend}")
            if pool is not None and chosen is not None:
                pool.done(chosen, failed)
            raise
        _count_proxy(exchange.proxy, None)
        if exchange.backend != "default":
            bump(f"{BACKEND}requests:{exchange.backend}")
        if pool is not None and chosen is not None:
            pool.done(chosen)
        return fetched

    def _exchange(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None,
        body: bytes | None,
        response: httpx.Response,
    ) -> Exchange:
        """What an archive keeps of one hop (its body filled in once read). The request's
        headers are the transport's request's when it made one, else the crawl's and the
        request's own, with Host."""
        if not self._direct:
            sent = _raw(response.request.headers)
        else:  # a session sent it, with the crawl's headers and the request's own over them
            own = {name.lower(): (name, value) for name, value in (headers or {}).items()}
            sent = [("Host", urlsplit(url).netloc)]
            sent += [(k, v) for k, v in self._header_pairs if k.lower() not in own]
            sent += own.values()
        return Exchange(
            method,
            url,
            sent,
            body,
            response.status_code,
            response.reason_phrase,
            response.http_version,
            _raw(response.headers),
            b"",
            time.time(),
        )

    async def _follow(self, exchange: _Exchange) -> Fetched:
        (
            method,
            url,
            headers,
            body,
            session,
            proxy,
            backend,
            allow_status,
            error_body,
            redirect,
            limit,
            truncate,
            into,
        ) = exchange
        seen = {(method, url)}
        archive = _exchanges.get() if into is None else None
        for hop in range(self._max_redirects + 1):
            try:
                async with self._send(
                    method, url, headers, body, session, proxy, backend
                ) as response:
                    status = response.status_code
                    if archive is not None:  # (appended now; the body, once read, below)
                        archive.append(self._exchange(method, url, headers, body, response))
                    if status in _REDIRECTS and "location" in response.headers:
                        if self._caching:  # a cache keeps what was read whole
                            await _read_capped(response, url, limit, truncate=True)
                        location = response.headers["location"]
                        target = join(url, location).partition("#")[0]
                        allowed = redirect(target) if redirect is not None else target
                        if allowed is None:
                            raise RedirectOutOfScope(url, f"redirected out of scope to {target}")
                        if status in _TO_GET and method != "HEAD":
                            methods = _TO_GET[status]
                            if methods is None or method in methods:
                                method, body, headers = "GET", None, _without_content(headers)
                        if (method, allowed) in seen:
                            raise TooManyRedirects(url, f"redirect loop back to {allowed}")
                        seen.add((method, allowed))
                        url = allowed
                        continue
                    if status == 407 and proxy is not None:  # the proxy's answer, not the site's
                        raise ProxyError(
                            url, "the proxy refused the request: 407 Proxy Authentication Required"
                        )
                    if status >= 400 and status not in allow_status:
                        fetched = None
                        if error_body or self._caching or archive is not None:
                            content = await _read_capped(response, url, limit, truncate=True)
                            if archive is not None:
                                archive[-1] = dataclasses.replace(archive[-1], body=content)
                            if error_body:
                                fetched = _fetched(url, response, content, hop, method)
                        raise HTTPStatusError(url, status, retry_after(response.headers), fetched)
                    if into is not None:
                        await _stream_capped(response, url, limit, into)
                        return _fetched(url, response, b"", hop, method)
                    content = await _read_capped(response, url, limit, truncate)
                    if archive is not None:
                        archive[-1] = dataclasses.replace(archive[-1], body=content)
                    return _fetched(url, response, content, hop, method)
            except FetchError as exc:
                exc.sent = exc.sent or hop > 0  # refused before a later hop: earlier ones went out
                raise
        raise TooManyRedirects(url, f"more than {self._max_redirects} redirects")


def _raw(headers: httpx.Headers) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers.raw]


def _fetched(
    url: str, response: httpx.Response, content: bytes, redirects: int, method: str
) -> Fetched:
    """What a fetch of `url` got: `response` with its body `content`."""
    caching = response.extensions.get("caching") or {}
    return Fetched(
        url,
        response.status_code,
        response.headers,
        content,
        redirects,
        method,
        bool(caching.get("from_cache")),
    )


def _cached(
    transport: httpx.AsyncBaseTransport,
    directory: Path,
    ttl: float | None,
    rfc: bool,
    recording: bool,
) -> httpx.AsyncBaseTransport:
    """`transport` behind an HTTP cache kept in `directory` (see Fetcher)."""
    from hishel import AsyncSqliteStorage
    from hishel.httpx import AsyncCacheTransport

    try:
        directory.mkdir(parents=True, exist_ok=True)
        _gitignore(directory, recording)
    except OSError as exc:
        raise ConfigError(f"cannot use {directory} for the HTTP cache: {exc.strerror}") from None
    storage = AsyncSqliteStorage(database_path=directory / "http.db", default_ttl=ttl)
    if rfc:
        return AsyncCacheTransport(transport, storage=storage, rfc=True)
    return _KeepAll(transport, storage)


#: The .gitignore of a cache folder that is a recording: committed as it is, without SQLite's
#: temporary files (a cleanly closed cache has none).
_RECORDING_GITIGNORE = """\
# Written by crawler: this folder is an HTTP cache, which is a recording of the site that
# crawler.testing.Replay replays offline. Commit it as it is; SQLite's temporary files stay out.
*-wal
*-shm
*-journal
"""
#: The .gitignore of a plain cache folder (the default one): kept out of git.
_CACHE_GITIGNORE = """\
# Written by crawler: this folder is an HTTP cache, kept out of git. To record a site for
# offline tests, name another folder with -s http_cache_dir=...: that one can be committed.
*
"""


def _gitignore(directory: Path, recording: bool) -> None:
    """Write the cache folder's .gitignore, unless someone else's (not hishel's, which would
    ignore everything, recordings included) is there."""
    path = directory / ".gitignore"
    ours = (_RECORDING_GITIGNORE, _CACHE_GITIGNORE)
    try:
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = None
    hishels = current is not None and current.startswith("# Automatically created by Hishel")
    if current is None or current in ours or hishels:
        wanted = ours[0] if recording else ours[1]
        if current != wanted:
            path.write_text(wanted, encoding="utf-8")


def _count_proxy(proxy: str | None, error: str | None) -> None:
    """Count a request through `proxy` (and whether the proxy failed it) with its page."""
    if proxy is not None:
        name = proxy_name(proxy)
        bump(f"{PROXY}requests:{name}")
        if error is not None:
            bump(f"{PROXY}failed:{name}")


class _KeepAll(httpx.AsyncBaseTransport):
    """The "all" cache policy: every answer (any status but 206, any method) is kept under its
    request's identity (method, URL, body) and given again, whatever its headers say. hishel
    keeps the entries (and expires them); its own "ignore the headers" mode keeps only 2xx
    answers to GET and HEAD, and a spider's second run should not ask for a robots.txt that
    was missing, or POST again."""

    def __init__(self, transport: httpx.AsyncBaseTransport, storage: Any) -> None:
        self._next = transport
        self._storage = storage

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import hishel

        digest = hashlib.sha256(f"{request.method} {request.url}\n".encode())
        digest.update(request.content)
        key = digest.hexdigest()
        for entry in await self._storage.get_entries(key):
            return _from_entry(entry.response, cached=True)
        response = await self._next.handle_async_request(request)
        if response.status_code == 206:  # a part of a body cannot answer later requests
            return response
        entry = await self._storage.create_entry(
            hishel.Request(request.method, str(request.url), _cache_headers(request.headers)),
            hishel.Response(
                response.status_code, _cache_headers(response.headers), response.aiter_raw()
            ),
            key,
        )
        return _from_entry(entry.response, cached=False, upstream=response)

    async def aclose(self) -> None:
        await self._next.aclose()
        await self._storage.close()


def _cache_headers(headers: httpx.Headers) -> Any:
    import hishel

    grouped: dict[str, list[str]] = {}
    for key, value in headers.multi_items():
        if key != "transfer-encoding":  # the body is kept without it
            grouped.setdefault(key, []).append(value)
    return hishel.Headers(grouped)


def _from_entry(
    response: Any, *, cached: bool, upstream: httpx.Response | None = None
) -> httpx.Response:
    """An httpx response reading a cache entry's body (and closing `upstream` after)."""
    stream = response.stream

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in stream:
                yield chunk

        async def aclose(self) -> None:
            if hasattr(stream, "aclose"):
                await stream.aclose()
            if upstream is not None:
                await upstream.aclose()

    headers = [
        (key.encode(), value.encode())
        for key in response.headers
        for value in response.headers.get_list(key) or []
    ]
    return httpx.Response(
        response.status_code,
        headers=headers,
        stream=Body(),
        extensions={"caching": {"from_cache": cached}},
    )


class _Exchange(NamedTuple):
    """A request as the fetcher sends it (on its first hop), and what to make of answers."""

    method: str
    url: str
    headers: dict[str, str] | None
    body: bytes | None
    session: str
    proxy: str | None
    backend: str
    allow_status: frozenset[int]
    error_body: bool
    redirect: Callable[[str], str | None] | None
    limit: int
    truncate: bool
    #: Where the final response's body goes, chunk by chunk (a download), if not in memory.
    into: Callable[[bytes], Awaitable[None]] | None = None


def _with_cookies(
    jar: httpx.Cookies, method: str, url: str, headers: dict[str, str] | None
) -> dict[str, str] | None:
    """`headers` with the jar's cookies for `url`, unless they name cookies themselves."""
    probe = httpx.Request(method, url, headers=headers)
    jar.set_cookie_header(probe)
    cookie = probe.headers.get("cookie")
    if cookie is None or any(name.lower() == "cookie" for name in headers or ()):
        return headers
    return {**(headers or {}), "Cookie": cookie}


def _without_content(headers: dict[str, str] | None) -> dict[str, str] | None:
    """Headers for a request that no longer has a body (a redirect turned it into a GET)."""
    if not headers:
        return headers
    return {k: v for k, v in headers.items() if not k.lower().startswith("content-")}


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
        stream = response.stream  # (not aiter_raw(): a layer of bookkeeping less per chunk)
        assert isinstance(stream, httpx.AsyncByteStream)
        async for raw in stream:
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


async def _stream_capped(
    response: httpx.Response, url: str, limit: int, into: Callable[[bytes], Awaitable[None]]
) -> None:
    """Hand the decoded body to `into` chunk by chunk; ResponseTooLarge past `limit` (at once
    when the Content-Length says so)."""
    declared = response.headers.get("content-length", "")
    encoding = response.headers.get("content-encoding")
    if not encoding and declared.isdigit() and int(declared) > limit:
        raise ResponseTooLarge(url, f"Content-Length {declared} exceeds {limit} bytes")
    if response.is_stream_consumed:  # built in memory (mock transports)
        if len(response.content) > limit:
            raise ResponseTooLarge(url, f"body exceeds {limit} bytes")
        await into(response.content)
        return
    size = 0
    try:
        decoder = decoder_for(encoding)
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        async for raw in stream:
            chunk = decoder.decode(raw, limit - size)
            size += len(chunk)
            if size > limit:
                raise ResponseTooLarge(url, f"body exceeds {limit} bytes")
            if chunk:
                await into(chunk)
        tail = decoder.flush(limit - size)
    except DecodingError as exc:
        raise ContentDecodingError(url, f"cannot decode body: {exc}") from None
    if size + len(tail) > limit:
        raise ResponseTooLarge(url, f"body exceeds {limit} bytes")
    if tail:
        await into(tail)


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
