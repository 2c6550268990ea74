"""Name lookups: an asynchronous resolver behind a cache.

`AsyncResolver` asks DNS through c-ares (aiodns): no thread per lookup, the hosts file honoured,
and each answer's TTL. `SystemResolver` asks the operating system (getaddrinfo in the loop's
threads: nsswitch, mDNS and the like), whose answers carry no TTL. `DnsCache` keeps each answer
for its TTL (within `MIN_TTL`..`MAX_TTL`) and a name that does not exist for `NEGATIVE_TTL` (a
failure that may pass, a timeout or a server failure, is not kept: the next request asks
again), shares one lookup
among every request waiting for the same name, bounds the lookups in flight, and counts them
(`DnsStats`). The address guard (addresses.py) asks the cache and pins what it checked.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

#: Answers of TTL 0 (the hosts file, some CDNs) are kept this long: a page's requests share one.
MIN_TTL = 5.0
#: No answer is kept longer than this, whatever its TTL.
MAX_TTL = 3600.0
#: A name that does not exist (NXDOMAIN, no address) is not asked for again within this time.
NEGATIVE_TTL = 30.0
#: How long an answer of a resolver that gives no TTL (the system's) is kept.
SYSTEM_TTL = 60.0
#: Names the cache keeps at most (the oldest answers leave first).
MAX_NAMES = 100_000

#: A name's addresses (strings, best first) and their TTL in seconds; NameNotFound when it
#: has none, another OSError when the lookup failed (a timeout, a server failure).
Lookup = Callable[[str], Awaitable[tuple[list[str], float]]]

#: c-ares' and getaddrinfo's answers for a name that does not exist or has no address.
_ARES_NOT_FOUND = frozenset({1, 4})  # ARES_ENODATA, ARES_ENOTFOUND
_EAI_NOT_FOUND = frozenset(
    code for code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)) if code is not None
)


class NameNotFound(OSError):
    """The name does not exist, or has no address: asking again soon will not change that."""


@dataclass(slots=True)
class DnsStats:
    """A crawl's name lookups: sent to the resolver, answered by the cache (or by a lookup
    already in flight for the name), failed, and the seconds the lookups sent took in all."""

    lookups: int = 0
    cached: int = 0
    failed: int = 0
    seconds: float = 0.0


class SystemResolver:
    """The operating system's answer (getaddrinfo), in its order, without duplicates, kept
    `SYSTEM_TTL` seconds."""

    async def __call__(self, host: str) -> tuple[list[str], float]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            if exc.errno in _EAI_NOT_FOUND:
                raise NameNotFound(exc.strerror or "name not found") from None
            raise
        return list(dict.fromkeys(str(info[4][0]) for info in infos)), SYSTEM_TTL

    async def close(self) -> None:
        pass


class AsyncResolver:
    """DNS through c-ares (aiodns): the hosts file, then `servers` ("ip" or "ip:port"; none:
    the system's resolv.conf). The TTL is the shortest of the answer's records."""

    def __init__(self, servers: Sequence[str] = (), *, timeout: float = 5.0) -> None:
        self._servers = list(servers)
        self._timeout = timeout
        self._resolver: Any = None  # made in the running loop, at the first lookup

    async def __call__(self, host: str) -> tuple[list[str], float]:
        try:
            import aiodns  # only crawls that resolve names load c-ares
        except ImportError as exc:  # a broken install: say what to do, not where it broke
            raise ConfigError(
                f"dns_resolver=async needs aiodns ({exc}): pip install aiodns, or set "
                "-s dns_resolver=system"
            ) from None

        if self._resolver is None:
            self._resolver = aiodns.DNSResolver(
                nameservers=self._servers or None, timeout=self._timeout, tries=2
            )
        try:
            answer = await self._resolver.getaddrinfo(host, type=socket.SOCK_STREAM)
        except aiodns.error.DNSError as exc:
            message = str(exc.args[-1]) if exc.args else "lookup failed"
            if exc.args and exc.args[0] in _ARES_NOT_FOUND:
                raise NameNotFound(message) from None
            raise OSError(message) from None
        addresses = list(dict.fromkeys(node.addr[0].decode() for node in answer.nodes))
        if not addresses:
            raise NameNotFound("no addresses")
        return addresses, float(min(node.ttl for node in answer.nodes))

    async def close(self) -> None:
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None


def fixed_ttl(resolve: Callable[[str], Awaitable[list[str]]], ttl: float = SYSTEM_TTL) -> Lookup:
    """A resolver that answers addresses only (a test's hook) as a Lookup of TTL `ttl`."""

    async def lookup(host: str) -> tuple[list[str], float]:
        return await resolve(host), ttl

    return lookup


class DnsCache:
    """Answers names from `lookup`, each kept for its TTL (see module); at most `max_in_flight`
    lookups at once. `stats` counts them."""

    def __init__(
        self,
        lookup: Lookup,
        *,
        max_in_flight: int = 32,
        clock: Callable[[], float] = time.monotonic,
        max_names: int = MAX_NAMES,
    ) -> None:
        self._lookup = lookup
        self.clock = clock
        self._max_names = max_names
        self._slots = asyncio.Semaphore(max_in_flight)
        #: name -> (addresses, or why it does not exist; when the answer expires)
        self._answers: dict[str, tuple[list[str] | str, float]] = {}
        self._pending: dict[str, asyncio.Task[tuple[list[str], float]]] = {}
        self.stats = DnsStats()

    async def resolve(self, host: str) -> tuple[list[str], float]:
        """`host`'s addresses and the clock time their answer expires; NameNotFound when it
        has none (kept `NEGATIVE_TTL` seconds too), another OSError when the lookup failed."""
        known = self._answers.get(host)
        if known is not None and known[1] > self.clock():
            self.stats.cached += 1
            return _answer(known)
        pending = self._pending.get(host)
        if pending is None:
            pending = self._pending[host] = asyncio.ensure_future(self._ask(host))
            pending.add_done_callback(_retrieved)  # (its waiters may all have left)
        else:
            self.stats.cached += 1
        # a waiter that is cancelled leaves the lookup to the others
        return await asyncio.shield(pending)

    async def _ask(self, host: str) -> tuple[list[str], float]:
        try:
            async with self._slots:
                started = time.perf_counter()
                self.stats.lookups += 1
                try:
                    addresses, ttl = await self._lookup(host)
                except NameNotFound as exc:
                    self.stats.failed += 1
                    answer: tuple[list[str] | str, float] = (
                        str(exc) or "name not found",
                        self.clock() + NEGATIVE_TTL,
                    )
                except OSError:
                    self.stats.failed += 1
                    raise  # it may pass: not kept, the next request asks again
                else:
                    ttl = min(max(ttl, MIN_TTL), MAX_TTL)
                    answer = (addresses, self.clock() + ttl)
                finally:
                    self.stats.seconds += time.perf_counter() - started
            self._keep(host, answer)
            return _answer(answer)
        finally:
            del self._pending[host]

    async def close(self) -> None:
        """Close the resolver (if it holds anything open)."""
        close = getattr(self._lookup, "close", None)
        if close is not None:
            await close()

    def _keep(self, host: str, answer: tuple[list[str] | str, float]) -> None:
        self._answers.pop(host, None)  # to the end: the oldest answers are first
        self._answers[host] = answer
        while len(self._answers) > self._max_names:
            del self._answers[next(iter(self._answers))]


def _retrieved(task: asyncio.Task[tuple[list[str], float]]) -> None:
    if not task.cancelled():
        task.exception()


def _answer(answer: tuple[list[str] | str, float]) -> tuple[list[str], float]:
    addresses, expires = answer
    if isinstance(addresses, str):
        raise NameNotFound(addresses)
    return addresses, expires
