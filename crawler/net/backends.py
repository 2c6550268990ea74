"""Fetch backends beside the default one (aiohttp, HTTP/1.1: addresses.PinnedSession), both
through libcurl (curl-cffi: curl-impersonate, with nghttp2): "http2" (HTTP/2 where the server
offers it by ALPN, else HTTP/1.1; the crawl's headers) and "impersonate" (passing for a browser:
its TLS ClientHello, HTTP/2 settings and headers). httpx's own HTTP/2 (pure-Python h2 over
anyio) was measured first: 0.58x the default backend's pages/s on the TLS benchmark site, where
curl's HTTP/2 makes 0.8x (benchmarks/backends.py). A session has PinnedSession's interface
(`send` answers with an httpx response whose body is read raw from `stream`; `aclose`), so that
the fetcher keeps every guarantee above it for every backend: redirects, caps, bounded decoding,
cookies, the cache.

curl connects only to the addresses the guard checked: a resolve entry for the host (or the
proxy) is set on the handle a request takes, and the address curl reached is checked again
once it answers.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from ..errors import BlockedAddress, ConfigError
from .addresses import AddressGuard


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


#: The resolve entries ("host:port:address") of the request the running task is sending
#: through curl: set on the handle the request gets (see _PinnedCurlSession).
_resolve: contextvars.ContextVar[list[str]] = contextvars.ContextVar("crawler_curl_resolve")


def _curl(extra: str) -> Any:
    """curl-cffi's modules, or a ConfigError saying how to install them."""
    try:
        import curl_cffi
        from curl_cffi import requests as curl_requests
    except ImportError:
        raise ConfigError(
            f"fetch_backend {extra!r} needs curl-cffi: pip install 'crawler[{extra}]'"
        ) from None
    return curl_cffi, curl_requests


def _entry(host: str, port: int, addresses: list[str]) -> str:
    """A curl resolve entry: `host:port` answered with `addresses` (IPv6 in brackets)."""
    return f"{host}:{port}:" + ",".join(f"[{a}]" if ":" in a else a for a in addresses)


class CurlSession:
    """Requests through libcurl (curl-cffi). With a browser `profile` (curl-cffi's name of it,
    "chrome" its newest Chrome), as that browser sends them: its TLS ClientHello (cipher suites
    and extensions in its order), HTTP/2 settings and default headers, its User-Agent included
    (the crawl's `headers` are not sent: a crawler's User-Agent on a browser's handshake would
    give both away; a request's own headers are). Without, HTTP/2 by ALPN with the crawl's
    `headers`. Bodies come raw (curl does not decode them): the fetcher decodes them within its
    caps. Certificates are verified against `ca_bundle`, else SSL_CERT_FILE's file, else the
    system's. `extra` names the install extra for the error of a missing curl-cffi."""

    def __init__(
        self,
        guard: AddressGuard,
        *,
        profile: str | None,
        headers: Mapping[str, str],
        max_clients: int,
        ca_bundle: str | None,
        connect_timeout: float,
        extra: str,
    ) -> None:
        curl_cffi, curl_requests = _curl(extra)
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
        if profile is not None and curl_cffi.Curl().impersonate(  # (unknown: the crawl's error)
            curl_requests.impersonate.resolve_latest_browser_type(profile)
        ):
            raise ConfigError(
                f"setting 'impersonate_profile': curl-cffi cannot pass for {profile!r}"
                " (chrome, edge, safari, firefox, or a version: chrome131...)"
            )
        self._session = _pinned_session_class(curl_requests)(
            impersonate=profile,
            headers=None if profile is not None else dict(headers),
            http_version=None if profile is not None else curl_cffi.CurlHttpVersion.V2TLS,
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
                accept_encoding=None,  # the browser's own, or the crawl's header
            )
        except self._errors.RequestException as exc:
            raise _translated(exc, self._errors) from None
        reached = response.primary_ip
        if proxy_parts is None and not self._guard.may_connect(host, reached):
            await response.aclose()  # (never seen: curl connects to the entry's address)
            raise BlockedAddress(url, f"curl reached {host} at {reached!r}, which is off limits")
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


@functools.cache
def _pinned_session_class(curl_requests: Any) -> type:
    """curl-cffi's AsyncSession whose handles, as a request takes one, get the request's
    resolve entries (the guard's pin): curl connects where the guard checked."""
    from curl_cffi import CurlOpt

    class _PinnedCurlSession(curl_requests.AsyncSession):  # type: ignore[misc]
        async def pop_curl(self) -> Any:
            curl = await super().pop_curl()
            curl.setopt(CurlOpt.RESOLVE, _resolve.get())
            return curl

    return _PinnedCurlSession


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


class Dispatch(httpx.AsyncBaseTransport):
    """The network under the HTTP cache: a request goes to `default` (a transport), or to the
    session of the backend its "fetch_backend" extension names (`session_of(name)`: the
    fetcher's sessions, which the fetcher closes). One cache over every backend."""

    def __init__(
        self, default: httpx.AsyncBaseTransport, session_of: Callable[[str], Session]
    ) -> None:
        self._default = default
        self._session_of = session_of

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        name = request.extensions.get("fetch_backend")
        if name is None or name == "default":
            return await self._default.handle_async_request(request)
        timeout = request.extensions.get("timeout", {})
        response = await self._session_of(name).send(
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
        await self._default.aclose()
