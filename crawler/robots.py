"""robots.txt: fetched once per origin before its first page, cached for the crawl, parsed with
Protego. A 4xx robots.txt allows everything; a 5xx or a network error disallows the origin's
pages for now (they are retried later, as transient failures). No scheduling here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from protego import Protego

from .errors import FetchError, HTTPStatusError

log = logging.getLogger(__name__)

#: How much of a robots.txt is parsed at most (RFC 9309 asks for at least 500 KiB).
MAX_ROBOTS_BYTES = 500 * 1024


class RobotsUnavailable(FetchError):
    """robots.txt answered 5xx or could not be fetched: the origin is off limits for now."""

    kind = "robots_unavailable"
    transient = True


class Robots:
    """Answers "may this URL be fetched?" for one user agent.

    `fetch_text(url)` returns the body of a robots.txt (raising FetchError like the fetcher).
    """

    def __init__(self, fetch_text: Callable[[str], Awaitable[str]], user_agent: str) -> None:
        self._fetch_text = fetch_text
        self._agent = user_agent
        self._rules: dict[str, asyncio.Future[Protego | None]] = {}

    async def allowed(self, url: str) -> bool:
        """Whether robots.txt lets the crawler fetch `url`. Raises RobotsUnavailable when the
        origin's robots.txt could not be had (the next call tries again)."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        future = self._rules.get(origin)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._rules[origin] = future
            try:
                future.set_result(await self._load(origin))
            except BaseException as exc:
                del self._rules[origin]
                future.set_exception(exc)
                future.exception()  # retrieved: waiters re-raise it, nobody else must
                raise
        rules = await asyncio.shield(future)
        return rules is None or bool(rules.can_fetch(url, self._agent))

    async def _load(self, origin: str) -> Protego | None:
        robots_url = f"{origin}/robots.txt"
        try:
            text = await self._fetch_text(robots_url)
        except HTTPStatusError as exc:
            if exc.status < 500:
                return None  # no robots.txt (or forbidden): everything is allowed
            raise RobotsUnavailable(robots_url, f"robots.txt answered HTTP {exc.status}") from exc
        except FetchError as exc:
            raise RobotsUnavailable(robots_url, f"robots.txt unavailable: {exc.message}") from exc
        log.debug("robots.txt of %s: %d bytes", origin, len(text))
        return Protego.parse(text)
