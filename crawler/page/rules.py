"""The crawl's rules for one page, as pure functions of their inputs: whether a failed fetch is
retried (and when), and where a link a callback yielded stands (in scope, how deep). No I/O, no
clock, no randomness of their own: the page runner hands them the time and the jitter."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FetchError, HTTPStatusError
from ..records import State
from ..urls import Scope, TrapGuard

#: Statuses whose Retry-After header is honoured.
RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class Verdict:
    """What becomes of a failed fetch: `state` QUEUED (retried from `not_before`) or FAILED,
    `message` why, and `wait_until`: until when the whole host waits (a Retry-After)."""

    state: State
    message: str
    not_before: float = 0.0
    wait_until: float | None = None


@dataclass(frozen=True, slots=True)
class RetryRules:
    """When a failed fetch is tried again: a transient failure (or a status in `statuses`)
    up to `max_retries` times, after an exponential back-off with full jitter (`backoff`
    doubling from the first retry, at most `backoff_max`); a 429 or 503 waits its Retry-After
    (the whole host with it), and fails when that is over `max_retry_after`."""

    max_retries: int
    statuses: frozenset[int]
    backoff: float
    backoff_max: float
    max_retry_after: float

    def verdict(self, exc: FetchError, attempts: int, now: float, jitter: float) -> Verdict:
        """The verdict on the `attempts`-th try of a request failing with `exc`, at `now`;
        `jitter` in [0, 1) scales the back-off."""
        status = exc.status if isinstance(exc, HTTPStatusError) else None
        transient = status in self.statuses if status is not None else exc.transient
        delay = jitter * min(self.backoff_max, self.backoff * 2 ** (attempts - 1))
        wait_until = None
        if isinstance(exc, HTTPStatusError) and exc.status in RETRY_AFTER_STATUSES:
            pause = exc.retry_after if exc.retry_after is not None else delay
            if pause > self.max_retry_after:
                message = f"{exc.message}, Retry-After {pause:.0f} s exceeds max_retry_after"
                return Verdict(State.FAILED, message)
            wait_until = now + pause
            delay = max(delay, pause)
        if transient and attempts <= self.max_retries:
            return Verdict(State.QUEUED, exc.message, now + delay, wait_until)
        return Verdict(State.FAILED, exc.message, wait_until=wait_until)


@dataclass(frozen=True, slots=True)
class LinkRules:
    """Where a request a callback yielded stands: `scope` says which hosts and URLs the crawl
    visits, `max_depth` how deep (0: no limit), `traps` which URLs look like crawler traps."""

    scope: Scope
    max_depth: int
    traps: TrapGuard

    @staticmethod
    def depth(source_depth: int, source_callback: str) -> int:
        """The depth of a link found on a page at `source_depth` parsed by `source_callback`:
        one more, but a sitemap lists seeds, whose entries start at the sitemap's own depth."""
        return source_depth + (0 if source_callback == "parse_sitemap" else 1)

    def too_deep(self, depth: int) -> bool:
        return bool(self.max_depth) and depth > self.max_depth
