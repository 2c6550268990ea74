"""Per-host politeness: how many requests may run at once and how often one may start.

Pure state machines on an injected clock (seconds): no I/O and no sleeping here; the frontier
asks `ready_at` and waits. Delays are therefore testable in virtual time.
"""

from __future__ import annotations

import math


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


class HostSlot:
    """One host's limits: at most `concurrency` requests in flight, starts paced by a token
    bucket, and nothing before `not_before` (a back-off such as Retry-After)."""

    __slots__ = ("bucket", "concurrency", "in_flight", "not_before")

    def __init__(self, concurrency: int, rate: float, *, now: float = 0.0) -> None:
        self.concurrency = concurrency
        self.in_flight = 0
        self.bucket = TokenBucket(rate, now=now)
        self.not_before = 0.0

    @property
    def full(self) -> bool:
        return self.in_flight >= self.concurrency

    def ready_at(self, now: float) -> float:
        """When the next request may start: `now` if it may start now, `inf` while all
        concurrency slots are taken."""
        if self.full:
            return math.inf
        return max(self.bucket.available_at(now), self.not_before)

    def acquire(self, now: float) -> None:
        """A request starts: it takes a slot and a token."""
        self.in_flight += 1
        self.bucket.take(now)

    def release(self) -> None:
        """A request finished (whatever its result)."""
        if self.in_flight <= 0:
            raise RuntimeError("HostSlot.release() without a matching acquire()")
        self.in_flight -= 1

    def back_off(self, until: float) -> None:
        """Start nothing on this host before `until` (never shortens an earlier back-off)."""
        self.not_before = max(self.not_before, until)
