"""The spider's own counters (`self.stats.inc("name")`), kept exactly once with the pages.

A counter bumped while a page is processed (in its callback, its hooks, its pipelines) belongs
to that page: it is committed with the page's outcome, or not at all when the page is fetched
again after a crash. One bumped outside any page (in `opened`, `closed`) is committed with the
next commit. Counters live in the store under their name prefixed with "stat:" (drop reasons,
kept the same way, with "dropped:").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

#: The counters of the page the running task is processing, if any.
_page: ContextVar[dict[str, int] | None] = ContextVar("crawler_page_counters", default=None)

STAT = "stat:"
DROPPED = "dropped:"
#: Pages the HTTP cache answered.
CACHE_HITS = "http:cached"
#: Rendered pages and their requests ("render:pages", "render:requests", "render:blocked",
#: "render:skipped", "render:failed").
RENDER = "render:"
#: Requests by fetch backend other than the default ("backend:requests:http2"), and those that
#: failed at the network ("backend:failed:http2"): the default's are the rest.
BACKEND = "backend:"
#: Duplicate pages ("duplicates:exact", "duplicates:near") and the requests not queued from
#: them ("duplicates:unfollowed", settings.duplicates = "nofollow").
DUPLICATES = "duplicates:"
#: Files items named ("files:stored", "files:known": found stored already, "files:failed").
FILES = "files:"
#: Revisits, by what they found ("revisit:unchanged", "revisit:changed", "revisit:gone").
REVISIT = "revisit:"


class SpiderStats:
    """A spider's custom counters: `inc(name, n=1)`. They show in `stats --json`, the live view
    and the report, summed over every run and process of the crawl."""

    def __init__(self) -> None:
        self._pending: dict[str, int] = {}

    def inc(self, name: str, n: int = 1) -> None:
        """Add `n` to the counter `name`."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"stats.inc(): the counter name must be a non-empty str, got {name!r}")
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError(f"stats.inc({name!r}): n must be an int, got {n!r}")
        counters = _page.get()
        if counters is None:
            counters = self._pending
        key = STAT + name
        counters[key] = counters.get(key, 0) + n

    def take(self) -> dict[str, int]:
        """The counters bumped outside any page since the last call (for the next commit)."""
        pending, self._pending = self._pending, {}
        return pending


def bump(name: str, n: int = 1) -> None:
    """Add `n` to the crawler's own counter `name` for the page being processed (if any)."""
    counters = _page.get()
    if counters is not None:
        counters[name] = counters.get(name, 0) + n


@contextlib.contextmanager
def counting(counters: dict[str, int]) -> Iterator[dict[str, int]]:
    """Within the block, `inc()` in this task (and the tasks it starts) adds to `counters`."""
    token = _page.set(counters)
    try:
        yield counters
    finally:
        _page.reset(token)


def add(total: dict[str, int], counters: dict[str, int] | None) -> None:
    """Add `counters` into `total`."""
    for name, n in (counters or {}).items():
        total[name] = total.get(name, 0) + n


def split(counters: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """Stored counters as (the spider's own, drop reasons), without their prefixes."""
    own = {k[len(STAT) :]: v for k, v in sorted(counters.items()) if k.startswith(STAT)}
    dropped = {
        k[len(DROPPED) :]: v
        for k, v in sorted(counters.items(), key=lambda kv: -kv[1])
        if k.startswith(DROPPED)
    }
    return own, dropped
