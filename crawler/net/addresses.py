"""Which addresses the crawler may connect to (SSRF guard): every request's host is resolved,
checked and pinned before a connection is made, on every redirect hop.

A crawl never connects to loopback, private, link-local (cloud metadata included), shared,
multicast or reserved addresses, except on the hosts its author named (start URLs and
allowed domains, exactly those host names): one of those that resolves to such an address at
its first lookup is a local site, crawlable as such. `allow_private` lifts the rule.

The connection goes to an address that was checked (the pin, handed to aiohttp as its
resolver's answer), so DNS rebinding cannot slip a second, internal answer in between; URLs,
pooling, SNI and certificates keep the name.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import math
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

import httpx

from ..errors import BlockedAddress as BlockedAddress  # (re-exported)
from ..errors import FetchConnectError, ProxyError
from . import tls
from .dns import DnsCache, DnsStats, SystemResolver, fixed_ttl
from .proxies import split_credentials

# aiohttp loads the system's CA bundle twice at import: the command line has it done beside
# startup (tls.py); a program that imports crawler gets aiohttp as it is
with tls.deferred_for_the_command_line():
    import aiohttp
    import aiohttp.abc
    import yarl
    from httpx_aiohttp import AiohttpTransport
    from httpx_aiohttp.transport import AiohttpResponseStream, map_aiohttp_exceptions

#: Resolves a host name to its addresses (strings); raises OSError when it cannot (a test's
#: hook: its answers are kept `dns.SYSTEM_TTL` seconds).
Resolver = Callable[[str], Awaitable[list[str]]]


def is_public(address: str) -> bool:
    """Whether an address is globally routable (not loopback, private, link-local, shared,
    multicast, reserved or unspecified)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class AddressGuard:
    """Resolves (through `dns`), checks and pins hosts: a host's pin lasts as long as the
    answer it came from. `trusted_hosts` are the hosts the spider's author named (canonical
    host names: start URLs' hosts and allowed domains). `resolve`, a plain resolver, stands for
    `dns` (tests)."""

    def __init__(
        self,
        *,
        dns: DnsCache | None = None,
        resolve: Resolver | None = None,
        trusted_hosts: Iterable[str] = (),
        allow_private: bool = False,
    ) -> None:
        if dns is None:
            dns = DnsCache(fixed_ttl(resolve) if resolve is not None else SystemResolver())
        self._dns = dns
        self._clock = dns.clock
        self._trusted = frozenset(trusted_hosts)
        self._allow_private = allow_private
        self._pins: dict[str, tuple[list[str], float]] = {}
        #: Trusted hosts whose first answer was non-public: a local site, crawlable as such.
        self._local_hosts: set[str] = set()
        self._decided: set[str] = set()

    async def check(self, host: str, url: str) -> str:
        """The address to connect to for `host` (resolved now or pinned earlier). Raises
        BlockedAddress when every address is off limits, FetchConnectError when the name
        does not resolve."""
        pinned = self._pins.get(host)
        if pinned is not None and pinned[1] > self._clock():
            self._dns.stats.cached += 1  # the pin is the cache's answer, checked
            return pinned[0][0]
        try:
            addresses, expires = await self._lookup(host)
        except OSError as exc:
            raise FetchConnectError(url, f"cannot resolve {host}: {exc}") from None
        if host in self._trusted and host not in self._decided:
            self._decided.add(host)
            if not all(is_public(a) for a in addresses):
                self._local_hosts.add(host)
        allowed = [a for a in addresses if self.may_connect(host, a)]
        if not allowed:
            what = (
                f"{host} is not a public address"
                if addresses == [host]
                else f"{host} resolves to {', '.join(addresses) or 'nothing'}, not public"
            )
            raise BlockedAddress(
                url,
                f"{what}: only hosts named in start_urls or allowed_domains may be private, "
                "loopback or link-local; allow_private_networks=true lifts the rule",
            )
        self._pins[host] = (allowed, expires)
        return allowed[0]

    async def check_proxied(self, host: str, url: str) -> None:
        """Check `host` for a request that goes through a proxy, as far as this machine can:
        the proxy resolves the name itself (nothing can be pinned), so a name that does not
        resolve here passes, and one that resolves here only to addresses off limits is
        refused (BlockedAddress)."""
        with contextlib.suppress(FetchConnectError):  # the proxy may know names we do not
            await self.check(host, url)

    async def admit(self, host: str, url: str, proxy_host: str | None) -> None:
        """Check (and pin) `host` for a request to `url`, sent directly, or through a proxy
        at `proxy_host` (which is pinned; the proxy resolves the host itself)."""
        if proxy_host is None:
            await self.check(host, url)
        else:
            await self.check_proxied(host, url)
            await self.pin_proxy(proxy_host, url)

    async def pin_proxy(self, host: str, url: str) -> None:
        """Resolve and pin a proxy's host. The crawl's author chose the proxy: any address
        is allowed. Raises ProxyError when the name does not resolve."""
        pinned = self._pins.get(host)
        if pinned is not None and pinned[1] > self._clock():
            return
        try:
            addresses, expires = await self._lookup(host)
        except OSError as exc:
            raise ProxyError(url, f"cannot resolve the proxy {host}: {exc}") from None
        if not addresses:
            raise ProxyError(url, f"the proxy {host} resolves to nothing")
        self._pins[host] = (addresses, expires)

    async def _lookup(self, host: str) -> tuple[list[str], float]:
        """`host` itself when it is an IP address (for good), else what DNS says and when its
        answer expires (OSError when it cannot)."""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return await self._dns.resolve(host)
        return [host], math.inf

    @property
    def dns_stats(self) -> DnsStats:
        """The lookups made so far."""
        return self._dns.stats

    async def close(self) -> None:
        await self._dns.close()

    def pinned(self, host: str) -> list[str]:
        """The addresses checked for `host`, best first (none if it was not checked)."""
        pinned = self._pins.get(host)
        return pinned[0] if pinned else []

    def may_connect(self, host: str, address: str) -> bool:
        """Whether a connection for `host` may go to `address` (a backend checks the address
        its connection reached with it)."""
        try:
            public = is_public(address)
        except ValueError:  # not an address at all
            return False
        return self._allow_private or host in self._local_hosts or public


class GuardedTransport(httpx.AsyncBaseTransport):
    """Checks each request's host with the guard before handing it to `inner`."""

    def __init__(self, inner: httpx.AsyncBaseTransport, guard: AddressGuard) -> None:
        self._inner = inner
        self._guard = guard

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        proxy = request.extensions.get("proxy")
        proxy_host = httpx.URL(proxy).host if proxy is not None else None
        await self._guard.admit(request.url.host, str(request.url), proxy_host)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _PinnedResolver(aiohttp.abc.AbstractResolver):
    """aiohttp's name resolution, answered with the guard's pin for a host (never a fresh
    lookup): the connection goes to an address that was checked (aiohttp tries them in
    order, so a name whose first address does not answer, ::1 for localhost on a machine
    without IPv6 say, is reached at the next)."""

    def __init__(self, guard: AddressGuard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        addresses = self._guard.pinned(host)
        if not addresses:
            raise OSError(f"{host} was not checked before connecting")
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        pass


def _session(
    guard: AddressGuard,
    limits: httpx.Limits,
    headers: Mapping[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> aiohttp.ClientSession:
    """aiohttp's session, resolving through the guard's pins, verifying https servers with
    `context` (None: aiohttp's own verifying context, the system's CAs: see tls.py)."""
    connector = aiohttp.TCPConnector(
        limit=limits.max_connections or 0,
        keepalive_timeout=limits.keepalive_expiry or 5.0,
        resolver=_PinnedResolver(guard),
        use_dns_cache=False,  # the guard pins; aiohttp must not keep answers of its own
        ssl=context if context is not None else True,
    )
    # httpx keeps the cookies; aiohttp must not keep a second jar
    return aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), headers=headers
    )


def pinned_transport(
    guard: AddressGuard, limits: httpx.Limits, context: ssl.SSLContext | None = None
) -> httpx.AsyncBaseTransport:
    """The network as an httpx transport (under the HTTP cache): aiohttp's connection pool
    behind httpx's API (httpx-aiohttp), resolving through the guard's pins. URLs, pool keys,
    SNI and certificates keep the name."""
    # The transport only uses its own SSL context when it builds its own session, which it never
    # does here; an empty verifying context (it trusts no CA, so it would fail closed) saves
    # loading a certificate bundle (~80 ms of startup) for nothing.
    unused = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    transport = _Transport(
        verify=unused,
        limits=limits,
        client=functools.partial(_session, guard, limits, None, context),
    )
    return GuardedTransport(transport, guard)


class PinnedSession:
    """The network without httpx's request and transport layers (a tenth of a page's CPU):
    aiohttp's connection pool, every request's host checked by the guard and connected to at
    its pinned address. `headers` go with every request. `send` answers with an httpx
    response (its `request` not set) whose body is read from aiohttp's stream; aiohttp's
    errors come out as httpx's, as from a transport. https servers are verified with `context`
    (None: aiohttp's verifying context)."""

    def __init__(
        self,
        guard: AddressGuard,
        limits: httpx.Limits,
        headers: Mapping[str, str],
        context: ssl.SSLContext | None = None,
    ) -> None:
        self._guard = guard
        self._limits = limits
        self._headers = headers
        self._context = context
        self._client: aiohttp.ClientSession | None = None

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
        target = yarl.URL(url, encoded=True)
        proxy_host = (yarl.URL(proxy).raw_host or "") if proxy is not None else None
        await self._guard.admit(target.raw_host or "", url, proxy_host)
        if target.scheme == "https":
            await tls.verify_paths_loaded()
        if self._client is None:
            self._client = _session(self._guard, self._limits, self._headers, self._context)
        try:
            response = await _open(
                self._client, method, target, headers, body, proxy, connect_timeout
            )
        except Exception:  # translated on the way out (entering these costs every request)
            with _proxy_errors(), map_aiohttp_exceptions():
                raise
        return _response(response, _Body(response))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()


async def _open(
    client: aiohttp.ClientSession,
    method: str,
    url: yarl.URL,
    headers: Mapping[str, str] | None,
    data: Any,
    proxy: str | None,
    connect_timeout: float | None,
) -> aiohttp.ClientResponse:
    """aiohttp's response to `method` on `url` (an encoded URL: sent as it is, where aiohttp
    would requote it: "%" as "%25", "[" as "%5B", "%7e" as "~"), through `proxy` (https
    through CONNECT) if one is given; redirects not followed, bodies not decoded."""
    sent: Mapping[str, str] | list[tuple[str, str]] | None = headers
    tunnel_headers = None
    bare = None
    if proxy is not None:
        bare, authorization = split_credentials(proxy)
        if authorization is not None:  # to the proxy: in the request, or in its CONNECT
            if url.scheme == "http":
                sent = _adding(headers, "Proxy-Authorization", authorization)
            else:
                tunnel_headers = {"Proxy-Authorization": authorization}
    return await client.request(
        method=method,
        url=url,
        headers=sent,
        data=data,
        allow_redirects=False,
        auto_decompress=False,
        compress=False,
        timeout=_timeout(connect_timeout),
        proxy=bare,
        proxy_headers=tunnel_headers,
    ).__aenter__()


def _response(
    response: aiohttp.ClientResponse,
    stream: httpx.AsyncByteStream,
    request: httpx.Request | None = None,
) -> httpx.Response:
    extensions = {"http_version": b"HTTP/1.1"}
    if response.reason:
        extensions["reason_phrase"] = response.reason.encode()
    return httpx.Response(
        status_code=response.status,
        headers=response.raw_headers,
        stream=stream,
        request=request,
        extensions=extensions,
    )


class _Body(httpx.AsyncByteStream):
    """A response's body as aiohttp's stream hands it over."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while chunk := await content.readany():
                yield chunk
        except Exception:  # translated on the way out
            with map_aiohttp_exceptions():
                raise

    async def aclose(self) -> None:
        with map_aiohttp_exceptions():
            await self._response.__aexit__(None, None, None)


class _Transport(AiohttpTransport):
    """httpx-aiohttp's transport, whose https requests wait for the CA certificates that load
    beside startup (tls.py; done before nearly any request); plain http never waits. A request
    whose "proxy" extension names a proxy goes through it (see `_open`)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            await tls.verify_paths_loaded()
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        timeout = request.extensions.get("timeout", {})
        headers = request.headers
        data: bytes | httpx.AsyncByteStream | None
        try:
            data = request.content or None
        except httpx.RequestNotRead:  # a streamed body: aiohttp reads it
            data = request.stream  # type: ignore[assignment]
            headers.pop("transfer-encoding", None)
        try:
            response = await _open(
                self.client,
                request.method,
                yarl.URL(str(request.url), encoded=True),
                headers,
                data,
                request.extensions.get("proxy"),
                timeout.get("connect"),
            )
        except Exception:  # translated on the way out (entering these costs every request)
            with _proxy_errors(), map_aiohttp_exceptions():
                raise
        return _response(response, AiohttpResponseStream(response), request)


def _adding(headers: Mapping[str, str] | None, name: str, value: str) -> list[tuple[str, str]]:
    """`headers` (every value of a repeated one kept) and one more."""
    if isinstance(headers, httpx.Headers):
        pairs = headers.multi_items()
    else:
        pairs = list((headers or {}).items())
    return [*pairs, (name, value)]


@functools.lru_cache(maxsize=16)
def _timeout(connect: float | None) -> aiohttp.ClientTimeout:
    """Only the connection has a timeout of its own: the fetcher times the whole request."""
    return aiohttp.ClientTimeout(sock_connect=connect)


@contextlib.contextmanager
def _proxy_errors() -> Iterator[None]:
    """httpx-aiohttp reports a proxy that cannot be reached as a connect timeout: tell the
    proxy's failures from the host's."""
    try:
        yield
    except httpx.HTTPError as exc:
        if isinstance(
            exc.__cause__, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError
        ):
            raise httpx.ProxyError(str(exc.__cause__)) from exc.__cause__
        raise
