"""robots.txt (RFC 9309): fetched once per origin before its first page, parsed with Protego,
cached for the crawl and kept in the store, so a resumed crawl does not fetch it again; fetched
anew once older than the TTL. A 4xx allows everything; a 5xx or a network error disallows the
origin's pages for now (they are retried later, as transient failures). At most 500 KiB is
parsed. No scheduling here: Crawl-delay and Request-rate are reported through `on_rules`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from protego import Protego

from ..errors import BlockedAddress, FetchError, HTTPStatusError, RobotsUnavailable

log = logging.getLogger(__name__)

#: How much of a robots.txt is parsed at most (RFC 9309 asks for at least 500 KiB).
MAX_ROBOTS_BYTES = 500 * 1024


@dataclass(frozen=True, slots=True)
class RobotsCache:
    """How robots.txt files are fetched and kept. `fetch(url)` returns the text (at most
    MAX_ROBOTS_BYTES, raising FetchError like the fetcher); `load(origin)` returns what the store
    holds, (fetched_at, text), where text None means "allow all"; `save` stores it."""

    fetch: Callable[[str], Awaitable[str]]
    load: Callable[[str], Awaitable[tuple[float, str | None] | None]]
    save: Callable[[str, float, str | None], Awaitable[None]]


def agent_token(user_agent: str) -> str:
    """The product token robots.txt groups are matched on: "crawler" for "crawler/0.1 (+...)"."""
    return user_agent.split("/", 1)[0].split()[0] if user_agent.strip() else "*"


class Robots:
    """Answers "may this URL be fetched?" for one user-agent token.

    `on_rules(host, interval)` hears, each time an origin's rules are loaded, the interval in
    seconds robots.txt asks between requests (Crawl-delay or Request-rate; 0 when none).
    """

    def __init__(
        self,
        cache: RobotsCache,
        token: str,
        *,
        ttl: float = 86400.0,
        on_rules: Callable[[str, float], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cache = cache
        self._token = token
        self._ttl = ttl
        self._on_rules = on_rules
        self._clock = clock
        self._rules: dict[str, asyncio.Future[tuple[float, Protego | None]]] = {}
        #: The origins of each host whose rules are held (see `forget`).
        self._origins: dict[str, set[str]] = {}

    async def allowed(self, url: str) -> bool:
        """Whether robots.txt lets the crawler fetch `url`. Raises RobotsUnavailable when the
        origin's robots.txt could not be had (the next call tries again)."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        future = self._rules.get(origin)
        if future is not None and future.done() and not future.exception():
            fetched_at, _ = future.result()
            if self._clock() - fetched_at > self._ttl:
                del self._rules[origin]
                future = None
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._rules[origin] = future
            self._origins.setdefault(parts.hostname or "", set()).add(origin)
            try:
                future.set_result(await self._load(origin, parts.hostname or ""))
            except BaseException as exc:
                del self._rules[origin]
                future.set_exception(exc)
                future.exception()  # retrieved: waiters re-raise it, nobody else must
                raise
        _, rules = await asyncio.shield(future)
        return rules is None or bool(rules.can_fetch(url, self._token))

    def forget(self, host: str) -> None:
        """Let go of `host`'s rules (the crawl let go of the host): its next page loads them
        again from the store, and `on_rules` hears of them again."""
        for origin in self._origins.pop(host, ()):
            future = self._rules.get(origin)
            if future is not None and future.done():
                del self._rules[origin]

    async def _load(self, origin: str, host: str) -> tuple[float, Protego | None]:
        stored = await self._cache.load(origin)
        if stored is not None and self._clock() - stored[0] <= self._ttl:
            fetched_at, text = stored
        else:
            fetched_at, text = self._clock(), await self._fetch(origin)
            await self._cache.save(origin, fetched_at, text)
        rules = Protego.parse(text) if text is not None else None
        if self._on_rules is not None:
            self._on_rules(host, self._interval(rules) if rules is not None else 0.0)
        return fetched_at, rules

    async def _fetch(self, origin: str) -> str | None:
        robots_url = f"{origin}/robots.txt"
        try:
            text = await self._cache.fetch(robots_url)
        except HTTPStatusError as exc:
            if exc.status < 500:
                return None  # no robots.txt (or forbidden): everything is allowed
            raise RobotsUnavailable(robots_url, f"robots.txt answered HTTP {exc.status}") from exc
        except FetchError as exc:
            if isinstance(exc, BlockedAddress):
                raise  # the origin may not be contacted at all: not a passing failure
            raise RobotsUnavailable(robots_url, f"robots.txt unavailable: {exc.message}") from exc
        if len(text.encode()) >= MAX_ROBOTS_BYTES:
            text = text[: text.rfind("\n") + 1]  # cut at the limit: drop the partial line
        log.debug("robots.txt of %s: %d characters", origin, len(text))
        return text

    def _interval(self, rules: Protego) -> float:
        delay = rules.crawl_delay(self._token) or 0.0
        rate = rules.request_rate(self._token)
        if rate is not None and rate.requests:
            delay = max(delay, rate.seconds / rate.requests)
        return float(delay)
