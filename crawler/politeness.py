"""Per-host politeness: how many requests may run at once, how often one may start, and whether the
host is healthy enough to be asked at all (a circuit breaker).

Pure state machines on an injected clock (seconds): no I/O and no sleeping here; the frontier
asks `ready_at` and waits. Delays are therefore testable in virtual time.
"""

from __future__ import annotations

import math

from .store import HostState


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


class Breaker:
    """A per-host circuit breaker.

    closed ──`threshold` consecutive failures──► open ──cooldown──► half-open (one probe)
       ▲                                          ▲                     │
       └────────────── probe succeeds ────────────┼─────────────────────┤
                                                  └─── probe fails ─────┘ (cooldown doubles)

    After `max_opens` openings in a row (no success in between) the host is `dead`.
    """

    __slots__ = ("cooldown", "failures", "max_opens", "open_until", "opens", "probing", "threshold")

    def __init__(self, threshold: int, cooldown: float, max_opens: int) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.max_opens = max_opens
        self.failures = 0
        self.opens = 0
        self.open_until = 0.0
        self.probing = False

    @property
    def closed(self) -> bool:
        return self.opens == 0

    @property
    def dead(self) -> bool:
        return self.opens >= self.max_opens

    def record(self, healthy: bool, now: float) -> None:
        """The result of a request: `healthy` is False for timeouts, connection errors, 5xx."""
        if healthy:
            self.failures = self.opens = 0
            self.open_until = 0.0
            self.probing = False
            return
        self.failures += 1
        if self.probing or (self.closed and self.failures >= self.threshold):
            self.probing = False
            self.opens += 1
            if self.opens >= self.max_opens:
                self.open_until = math.inf
            else:
                self.open_until = now + self.cooldown * 2 ** (self.opens - 1)

    @property
    def state(self) -> str:
        if self.closed:
            return "closed"
        if self.dead:
            return "dead"
        return "half-open" if self.probing else "open"


class HostSlot:
    """One host's limits: at most `concurrency` requests in flight, starts paced by a token
    bucket, nothing before `not_before` (a back-off such as Retry-After), and nothing while its
    circuit breaker is open (then a single probe)."""

    __slots__ = (
        "breaker",
        "bucket",
        "concurrency",
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
        self.not_before = 0.0
        self.breaker = breaker or Breaker(threshold=5, cooldown=30.0, max_opens=3)

    @property
    def full(self) -> bool:
        """No request may start now or later until one in flight ends."""
        if self.breaker.closed:
            return self.in_flight >= (1 if self.gated else self.concurrency)
        return self.in_flight > 0 or self.breaker.dead  # open: one probe at a time

    @property
    def dead(self) -> bool:
        """The host failed `max_opens` times in a row: give up on it."""
        return self.breaker.dead

    def ready_at(self, now: float) -> float:
        """When the next request may start: `now` if it may start now, `inf` while all
        concurrency slots are taken (or the host is dead)."""
        if self.full:
            return math.inf
        return max(self.bucket.available_at(now), self.not_before, self.breaker.open_until)

    def acquire(self, now: float) -> None:
        """A request starts: it takes a slot and a token (and is the probe of an open circuit)."""
        self.in_flight += 1
        self.bucket.take(now)
        if not self.breaker.closed:
            self.breaker.probing = True

    def release(self, healthy: bool | None = None, *, now: float = 0.0) -> None:
        """A request finished. `healthy`: True if the host answered sensibly, False for a
        timeout, connection error or 5xx, None when it says nothing about the host."""
        if self.in_flight <= 0:
            raise RuntimeError("HostSlot.release() without a matching acquire()")
        self.in_flight -= 1
        if healthy is not None:
            self.breaker.record(healthy, now)
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
