"""Fetch backends beside the default one (aiohttp, HTTP/1.1: addresses.PinnedSession): "http2"
(httpx's own connection pool with h2: HTTP/2 where the server offers it by ALPN, else HTTP/1.1)
and "impersonate" (curl-cffi passing for a browser: its TLS ClientHello, HTTP/2 settings and
headers). Each is a session with the same narrow interface as PinnedSession (`send` answers with
an httpx response whose body is read raw from `stream`; `aclose`), so that the fetcher keeps
every guarantee above it for all of them: redirects, caps, bounded decoding, cookies, the cache.

Every backend connects only to the addresses the guard checked: the http2 backend through a
network layer that answers a host with its pin; curl through a resolve entry for the host (and
the proxy) set on the handle before each request, the address curl reached checked again once
it answers.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpcore
import httpx

from ..errors import BlockedAddress, ConfigError
from .addresses import AddressGuard
from .proxies import split_credentials


class Session(Protocol):
    """A backend's session: PinnedSession's interface."""

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        body: bytes | None,
        proxy: str | None,
        connect_timeout: float | None,
    ) -> httpx.Response: ...

    async def aclose(self) -> None: ...


def trust(ca_bundle: str | None) -> ssl.SSLContext:
    """A verifying SSL context trusting `ca_bundle` (a PEM file), else the system's CAs (which
    SSL_CERT_FILE and SSL_CERT_DIR name, as OpenSSL reads them). A bundle that cannot be read
    is a ConfigError."""
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"setting 'ca_bundle': cannot load {ca_bundle!r}: {exc}") from None


def _with(headers: Mapping[str, str], extra: Mapping[str, str] | None) -> list[tuple[str, str]]:
    """`headers` with `extra` over them (case-insensitively)."""
    if not extra:
        return list(headers.items())
    mine = {name.lower() for name in extra}
    return [(k, v) for k, v in headers.items() if k.lower() not in mine] + list(extra.items())


class _PinnedNetwork(httpcore.AsyncNetworkBackend):
    """httpcore's network, connecting to the guard's pinned addresses for a host (in order,
    the next when one does not answer); TLS keeps the name (SNI, certificate)."""

    def __init__(self, guard: AddressGuard) -> None:
        self._guard = guard
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = self._guard.pinned(host)
        if not addresses:
            raise httpcore.ConnectError(f"{host} was not checked before connecting")
        failed: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failed = exc
        assert failed is not None
        raise failed

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover - never asked: no unix sockets
        raise httpcore.ConnectError("unix sockets are not crawled")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PoolTransport(httpx.AsyncHTTPTransport):
    """httpx's transport (its request and error mapping) over a pool made here: httpx builds
    its own without a network backend to give."""

    def __init__(self, pool: httpcore.AsyncConnectionPool) -> None:
        self._pool = pool


class Http2Session:
    """HTTP/2 with ALPN (HTTP/1.1 where a server does not offer h2, and for plain http):
    httpx's pool and h2, one pool per proxy, connecting to pinned addresses."""

    def __init__(
        self,
        guard: AddressGuard,
        limits: httpx.Limits,
        headers: Mapping[str, str],
        context: ssl.SSLContext,
    ) -> None:
        self._guard = guard
        self._limits = limits
        self._headers = headers
        self._context = context
        self._network = _PinnedNetwork(guard)
        self._pools: dict[str | None, _PoolTransport] = {}

    def _transport(self, proxy: str | None) -> _PoolTransport:
        transport = self._pools.get(proxy)
        if transport is not None:
            return transport
        common: dict[str, Any] = {
            "ssl_context": self._context,
            "max_connections": self._limits.max_connections,
            "max_keepalive_connections": self._limits.max_keepalive_connections,
            "keepalive_expiry": self._limits.keepalive_expiry,
            "http1": True,
            "http2": True,
            "network_backend": self._network,
        }
        if proxy is None:
            pool: httpcore.AsyncConnectionPool = httpcore.AsyncConnectionPool(**common)
        else:
            bare, authorization = split_credentials(proxy)
            pool = httpcore.AsyncHTTPProxy(
                proxy_url=bare,
                proxy_headers={"Proxy-Authorization": authorization} if authorization else None,
                **common,
            )
        transport = self._pools[proxy] = _PoolTransport(pool)
        return transport

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        body: bytes | None,
        proxy: str | None,
        connect_timeout: float | None,
    ) -> httpx.Response:
        """`method` to `url` with `headers` over the session's, through `proxy` if given."""
        await self._guard.admit(
            urlsplit(url).hostname or "", url, urlsplit(proxy).hostname if proxy else None
        )
        request = httpx.Request(
            method,
            url,
            headers=_with(self._headers, headers),
            content=body,
            extensions={"timeout": {"connect": connect_timeout}},
        )
        return await self._transport(proxy).handle_async_request(request)

    async def aclose(self) -> None:
        for transport in self._pools.values():
            await transport.aclose()


#: The resolve entries ("host:port:address") of the request the running task is sending
#: through curl: set on the handle the request gets (see _PinnedCurlSession).
_resolve: contextvars.ContextVar[list[str]] = contextvars.ContextVar("crawler_curl_resolve")


def _curl() -> Any:
    """curl-cffi's modules, or a ConfigError saying how to install them."""
    try:
        import curl_cffi
        from curl_cffi import requests as curl_requests
    except ImportError:
        raise ConfigError(
            "fetch_backend 'impersonate' needs curl-cffi: pip install 'crawler[impersonate]'"
        ) from None
    return curl_cffi, curl_requests


def _entry(host: str, port: int, addresses: list[str]) -> str:
    """A curl resolve entry: `host:port` answered with `addresses` (IPv6 in brackets)."""
    return f"{host}:{port}:" + ",".join(f"[{a}]" if ":" in a else a for a in addresses)


class ImpersonateSession:
    """Requests as a browser sends them, through curl-cffi (`profile`: its name of the
    browser, "chrome" its newest Chrome): the browser's TLS ClientHello (cipher suites and
    extensions in its order), HTTP/2 settings and default headers, its User-Agent included (the
    crawl's `headers` are not sent: a crawler's User-Agent on a browser's handshake would give
    both away; a request's own headers are). Bodies come raw (curl does not decode them): the
    fetcher decodes them within its caps. Certificates are verified against `ca_bundle`, else
    SSL_CERT_FILE's file, else the system's."""

    def __init__(
        self,
        guard: AddressGuard,
        *,
        profile: str,
        max_clients: int,
        ca_bundle: str | None,
        connect_timeout: float,
    ) -> None:
        curl_cffi, curl_requests = _curl()
        self._guard = guard
        self._errors = curl_requests.exceptions
        options: dict[Any, Any] = {
            curl_cffi.CurlOpt.HTTP_CONTENT_DECODING: 0,  # decoded by the fetcher, capped
            curl_cffi.CurlOpt.CONNECTTIMEOUT_MS: int(connect_timeout * 1000),
        }
        # the CAs as OpenSSL reads them for Python (curl-cffi's own default file did not take
        # SSL_CERT_FILE's place: measured, the verification failed)
        cafile = ca_bundle or os.environ.get("SSL_CERT_FILE") or None
        if cafile is None and os.environ.get("SSL_CERT_DIR"):
            options[curl_cffi.CurlOpt.CAPATH] = os.environ["SSL_CERT_DIR"]
        if curl_cffi.Curl().impersonate(  # (a name curl-cffi does not know: the crawl's error)
            curl_requests.impersonate.resolve_latest_browser_type(profile)
        ):
            raise ConfigError(
                f"setting 'impersonate_profile': curl-cffi cannot pass for {profile!r}"
                " (chrome, edge, safari, firefox, or a version: chrome131...)"
            )
        self._session = _pinned_session_class(curl_requests)(
            impersonate=profile,
            max_clients=max_clients,
            verify=cafile or True,
            trust_env=False,  # proxies are the crawl's to choose
            allow_redirects=False,  # the fetcher follows them, each hop checked
            discard_cookies=True,  # the crawl's jars keep them
            curl_options=options,
        )

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        body: bytes | None,
        proxy: str | None,
        connect_timeout: float | None,
    ) -> httpx.Response:
        parts = urlsplit(url)
        host = parts.hostname or ""
        proxy_parts = urlsplit(proxy) if proxy else None
        proxy_host = proxy_parts.hostname if proxy_parts is not None else None
        await self._guard.admit(host, url, proxy_host)
        entries = []
        if proxy_parts is None:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            entries.append(_entry(host, port, self._guard.pinned(host)))
        else:
            assert proxy_host is not None
            port = proxy_parts.port or (443 if proxy_parts.scheme == "https" else 80)
            entries.append(_entry(proxy_host, port, self._guard.pinned(proxy_host)))
        _resolve.set(entries)
        try:
            response = await self._session.request(
                method,
                url,
                headers=dict(headers) if headers else None,
                data=body,
                proxy=proxy,
                stream=True,
                timeout=None,  # the fetcher times the whole request
                accept_encoding=None,  # the browser's own Accept-Encoding
            )
        except self._errors.RequestException as exc:
            raise _translated(exc, self._errors) from None
        if proxy_parts is None and response.primary_ip not in self._guard.pinned(host):
            await response.aclose()  # (cannot happen: curl connects to the entry's address)
            raise BlockedAddress(url, f"curl reached {host} at {response.primary_ip}, unchecked")
        return httpx.Response(
            status_code=response.status_code,
            headers=[(k, v or "") for k, v in response.headers.multi_items()],
            stream=_CurlBody(response, self._errors),
            extensions={"http_version": _VERSIONS.get(response.http_version, b"HTTP/1.1")},
        )

    async def aclose(self) -> None:
        await self._session.close()


#: curl's HTTP versions (CURL_HTTP_VERSION_*) as httpx names them.
_VERSIONS = {1: b"HTTP/1.0", 2: b"HTTP/1.1", 3: b"HTTP/2", 30: b"HTTP/3"}

_SESSION_CLASS: list[type] = []


def _pinned_session_class(curl_requests: Any) -> type:
    """curl-cffi's AsyncSession whose handles, as a request takes one, get the request's
    resolve entries (the guard's pin): curl connects where the guard checked."""
    if not _SESSION_CLASS:
        from curl_cffi import CurlOpt

        class _PinnedCurlSession(curl_requests.AsyncSession):  # type: ignore[misc]
            async def pop_curl(self) -> Any:
                curl = await super().pop_curl()
                curl.setopt(CurlOpt.RESOLVE, _resolve.get())
                return curl

        _SESSION_CLASS.append(_PinnedCurlSession)
    return _SESSION_CLASS[0]


def _translated(exc: Exception, errors: Any) -> httpx.HTTPError:
    """curl-cffi's error as httpx's (which the fetcher translates at its boundary)."""
    message = str(exc)
    if isinstance(exc, errors.ProxyError):
        return httpx.ProxyError(message)
    if isinstance(exc, errors.Timeout):
        if "connect" in message.lower():
            failed = httpx.ConnectTimeout(message)
            failed.__cause__ = ConnectionError(message)  # a host that did not answer
            return failed
        return httpx.ReadTimeout(message)
    if isinstance(exc, errors.ConnectionError | errors.SSLError | errors.DNSError):
        return httpx.ConnectError(message)
    return httpx.RemoteProtocolError(message)


class _CurlBody(httpx.AsyncByteStream):
    """A curl-cffi response's body as it arrives."""

    def __init__(self, response: Any, errors: Any) -> None:
        self._response = response
        self._errors = errors

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_content():
                yield chunk
        except self._errors.RequestException as exc:
            raise _translated(exc, self._errors) from None

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self._response.aclose()


class SessionTransport(httpx.AsyncBaseTransport):
    """A backend session as an httpx transport (under the HTTP cache)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        response = await self._session.send(
            request.method,
            str(request.url),
            dict(request.headers),
            request.content or None,
            request.extensions.get("proxy"),
            timeout.get("connect"),
        )
        response.request = request
        return response

    async def aclose(self) -> None:
        await self._session.aclose()


class Dispatch(httpx.AsyncBaseTransport):
    """The transport of a request's backend (its "fetch_backend" extension; `default` for
    none): one HTTP cache over every backend."""

    def __init__(self, default: httpx.AsyncBaseTransport, others: Mapping[str, Any]) -> None:
        self._default = default
        self._others = others  # name -> a function making the transport, at its first use
        self._made: dict[str, httpx.AsyncBaseTransport] = {}

    def _for(self, name: str | None) -> httpx.AsyncBaseTransport:
        if name is None or name == "default" or name not in self._others:
            return self._default
        made = self._made.get(name)
        if made is None:
            made = self._made[name] = self._others[name]()
        return made

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._for(request.extensions.get("fetch_backend")).handle_async_request(
            request
        )

    async def aclose(self) -> None:
        await self._default.aclose()
        for transport in self._made.values():
            await transport.aclose()
