"""Per-host politeness: how many requests may run at once, how often one may start, and whether the
host is healthy enough to be asked at all (a circuit breaker).

Pure state machines on an injected clock (seconds): no I/O and no sleeping here; the frontier
asks `ready_at` and waits. Delays are therefore testable in virtual time.
"""

from __future__ import annotations

import enum
import math

from .records import HostState


class TokenBucket:
    """`rate` tokens per second, holding at most `burst`. A rate of 0 means no limit."""

    __slots__ = ("_tokens", "_updated", "burst", "rate")

    def __init__(self, rate: float, burst: float = 1.0, *, now: float = 0.0) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._updated = now

    def _refill(self, now: float) -> None:
        if now > self._updated:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now

    def available_at(self, now: float) -> float:
        """The earliest time (>= now) at which a token can be taken."""
        if self.rate <= 0:
            return now
        self._refill(now)
        if self._tokens >= 1:
            return now
        return now + (1 - self._tokens) / self.rate

    def take(self, now: float) -> None:
        """Take one token. Taking before `available_at` overdraws and delays later takes."""
        if self.rate > 0:
            self._refill(now)
            self._tokens -= 1

    def give_back(self, now: float) -> None:
        """Return a token taken for a request that never reached the host (a cached answer)."""
        if self.rate > 0:
            self._refill(now)
            self._tokens = min(self.burst, self._tokens + 1)


class Health(enum.Enum):
    """What the end of one request says about its host, for the circuit breaker."""

    #: An HTTP answer from a working server (any status but 5xx and 429).
    OK = "ok"
    #: An HTTP answer from a struggling server: 5xx or 429. The host is alive.
    ERROR = "error"
    #: No HTTP answer at all: connection refused or reset, DNS failure, timeout.
    UNANSWERED = "unanswered"


class Circuit(enum.StrEnum):
    """A host's circuit breaker state, as shown and reported."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"
    GIVEN_UP = "given up"


class Wait(enum.StrEnum):
    """What holds a host's next request back, as shown while the crawl waits."""

    CIRCUIT = "circuit open"
    RETRY_AFTER = "Retry-After"
    CRAWL_DELAY = "Crawl-delay"
    RATE_LIMIT = "rate limit"
    #: Its queued URLs are retries, due later.
    RETRY = "retries due"


#: Cooldowns stop doubling after this many openings (2**40 times the first is plenty).
_MAX_DOUBLINGS = 40


class Breaker:
    """A per-host circuit breaker.

    closed ──`threshold` failures in a row──► open ──cooldown──► half-open (one probe)
       ▲                                       ▲                      │
       └─────────── probe succeeds ────────────┼──────────────────────┤
                                               └──── probe fails ─────┘ cooldown doubles,
                                                                        up to `cooldown_max`

    A failure is an answer of a struggling server (5xx, 429) or no answer at all. A host that
    answers, even with errors, is never given up: it is only slowed down, and each of its URLs
    fails on its own once out of retries. A host that has not answered at all for `max_outage`
    seconds (its failures since its last answer span that long) is given up when its circuit
    (re)opens: `open_until` is then infinite.
    """

    __slots__ = (
        "cooldown",
        "cooldown_max",
        "failures",
        "max_outage",
        "open_until",
        "opens",
        "probing",
        "silent_since",
        "threshold",
    )

    def __init__(
        self,
        threshold: int,
        cooldown: float,
        *,
        cooldown_max: float = 60.0,
        max_outage: float = 300.0,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.cooldown_max = max(cooldown, cooldown_max)
        self.max_outage = max_outage
        self.failures = 0
        self.opens = 0
        self.open_until = 0.0
        self.probing = False
        #: When the host last stopped answering (the first failure without an HTTP answer
        #: since its last answer), or None while it answers. Not kept across restarts: a
        #: resumed crawl measures an outage anew.
        self.silent_since: float | None = None

    @property
    def closed(self) -> bool:
        return self.opens == 0

    @property
    def given_up(self) -> bool:
        return math.isinf(self.open_until)

    def record(self, health: Health, now: float) -> None:
        """The end of a request to the host, at `now`."""
        if health is Health.OK:
            self.failures = self.opens = 0
            self.open_until = 0.0
            self.probing = False
            self.silent_since = None
            return
        if health is Health.ERROR:
            self.silent_since = None  # it answers: alive
        elif self.silent_since is None:
            self.silent_since = now
        self.failures += 1
        if self.given_up or not (self.probing or (self.closed and self.failures >= self.threshold)):
            return
        self.probing = False
        self.opens += 1
        if self.silent_since is not None and now - self.silent_since >= self.max_outage:
            self.open_until = math.inf
        else:
            pause = self.cooldown * 2 ** min(self.opens - 1, _MAX_DOUBLINGS)
            self.open_until = now + min(pause, self.cooldown_max)

    def outage(self, now: float) -> float:
        """Seconds the host has gone without answering (0 while it answers)."""
        return 0.0 if self.silent_since is None else now - self.silent_since

    @property
    def state(self) -> Circuit:
        if self.closed:
            return Circuit.CLOSED
        if self.given_up:
            return Circuit.GIVEN_UP
        return Circuit.HALF_OPEN if self.probing else Circuit.OPEN


class HostSlot:
    """One host's limits: at most `concurrency` requests in flight, starts paced by a token
    bucket, nothing before `not_before` (a back-off such as Retry-After), and nothing while its
    circuit breaker is open (then a single probe)."""

    __slots__ = (
        "breaker",
        "bucket",
        "concurrency",
        "crawl_delay",
        "gated",
        "in_flight",
        "last_start",
        "not_before",
    )

    def __init__(
        self,
        concurrency: int,
        rate: float,
        *,
        now: float = 0.0,
        breaker: Breaker | None = None,
        gated: bool = False,
    ) -> None:
        self.concurrency = concurrency
        #: One request at a time until `open_gate()` (the host's robots.txt is not known yet).
        self.gated = gated
        self.in_flight = 0
        self.bucket = TokenBucket(rate, now=now)
        #: The bucket paces the host's Crawl-delay (stricter than the configured rate).
        self.crawl_delay = False
        self.not_before = 0.0
        self.breaker = breaker or Breaker(threshold=5, cooldown=30.0)

    @property
    def full(self) -> bool:
        """No request may start now or later until one in flight ends."""
        if self.breaker.closed:
            return self.in_flight >= (1 if self.gated else self.concurrency)
        return self.in_flight > 0 or self.breaker.given_up  # open: one probe at a time

    @property
    def given_up(self) -> bool:
        """The host has not answered for too long: give up on it."""
        return self.breaker.given_up

    def ready_at(self, now: float) -> float:
        """When the next request may start: `now` if it may start now, `inf` while all
        concurrency slots are taken (or the host is given up)."""
        if self.full:
            return math.inf
        return max(self.bucket.available_at(now), self.not_before, self.breaker.open_until)

    def waiting(self, now: float) -> tuple[float, Wait] | None:
        """Seconds until the next request may start and what holds it back; None when one
        may start now (or only a free concurrency slot is awaited, or the host is given up)."""
        if self.breaker.given_up:
            return None
        paced = Wait.CRAWL_DELAY if self.crawl_delay else Wait.RATE_LIMIT
        until, why = max(
            (self.breaker.open_until, Wait.CIRCUIT),
            (self.not_before, Wait.RETRY_AFTER),
            (self.bucket.available_at(now), paced),
            key=lambda wait: wait[0],
        )
        return (until - now, why) if until > now else None

    def acquire(self, now: float) -> None:
        """A request starts: it takes a slot and a token (and is the probe of an open circuit)."""
        self.in_flight += 1
        self.bucket.take(now)
        if not self.breaker.closed:
            self.breaker.probing = True

    def release(self, health: Health | None = None, *, now: float = 0.0) -> None:
        """A request finished. `health` is what it says about the host, None when it says
        nothing (no request went out: robots.txt disallowed it, the address was blocked)."""
        if self.in_flight <= 0:
            raise RuntimeError("HostSlot.release() without a matching acquire()")
        self.in_flight -= 1
        if health is not None:
            self.breaker.record(health, now)
        elif self.breaker.probing:
            self.breaker.probing = False  # the probe told nothing: probe again

    def back_off(self, until: float) -> None:
        """Start nothing on this host before `until` (never shortens an earlier back-off)."""
        self.not_before = max(self.not_before, until)

    def slow_down(self, interval: float, now: float) -> None:
        """At least `interval` seconds between request starts (robots.txt Crawl-delay), the
        next one no sooner than `interval` after `now`: the stricter of this and the configured
        rate limit wins."""
        if interval > 0:
            rate = 1.0 / interval
            if self.bucket.rate <= 0 or rate < self.bucket.rate:
                self.bucket = TokenBucket(rate, now=now)
                self.bucket.take(now)
                self.crawl_delay = True

    def snapshot(self, host: str) -> HostState:
        """What of this slot should survive a crash (probes and in-flight counts do not)."""
        breaker = self.breaker
        return HostState(host, self.not_before, breaker.failures, breaker.opens, breaker.open_until)

    def restore(self, state: HostState) -> None:
        """Take back a state saved by `snapshot` (in an earlier run)."""
        self.not_before = state.not_before
        self.breaker.failures = state.failures
        self.breaker.opens = state.opens
        self.breaker.open_until = state.open_until

    def open_gate(self) -> None:
        """The host's robots.txt is known: allow its full concurrency."""
        self.gated = False
