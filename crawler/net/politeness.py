"""Per-host politeness: how many requests may run at once, how often one may start, and whether the
host is healthy enough to be asked at all (a circuit breaker).

Pure state machines on an injected clock (seconds): no I/O and no sleeping here; the frontier
asks `ready_at` and waits. Delays are therefore testable in virtual time.
"""

from __future__ import annotations

import enum
import math
from collections import deque

from ..records import HostState


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
    #: An HTTP answer from a struggling server: 5xx. The host is alive.
    ERROR = "error"
    #: No HTTP answer at all: connection refused or reset, DNS failure, timeout.
    UNANSWERED = "unanswered"
    #: 429: the server asks for fewer requests. Its Retry-After holds the host (HostSlot's
    #: back-off); it is no evidence that the host is broken.
    THROTTLED = "throttled"


class Circuit(enum.StrEnum):
    """A host's circuit breaker state, as shown and reported."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"
    GIVEN_UP = "given up"


class HostHealth(enum.StrEnum):
    """A host's health, as shown (live view, stats, report): crawled at its pace (ok), held
    back by a Retry-After or after failures (slowed), its circuit open (open: probes only),
    or given up."""

    OK = "ok"
    SLOWED = "slowed"
    OPEN = "open"
    GIVEN_UP = "given up"


def host_health(state: HostState | None, now: float) -> tuple[HostHealth, str]:
    """A host's health and why, from its kept state (see HostState), as of `now`: the one rule
    the live view, `stats` and the report show."""
    if state is None:
        return HostHealth.OK, ""
    failed = (
        f"{state.failures} failed in a row"
        + (f" over {now - state.silent_since:.0f} s" if state.silent_since is not None else "")
        if state.failures
        else ""
    )
    if math.isinf(state.open_until):
        return HostHealth.GIVEN_UP, failed
    if state.open_until > now or state.opens:
        probe = f"probe in {state.open_until - now:.0f} s" if state.open_until > now else ""
        return HostHealth.OPEN, ", ".join(part for part in (failed, probe) if part)
    if state.not_before > now:
        return HostHealth.SLOWED, f"Retry-After: {state.not_before - now:.0f} s left"
    if state.failures:
        return HostHealth.SLOWED, failed
    return HostHealth.OK, ""


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
    """A host's health: a circuit breaker that tells a flaky host from a broken one by evidence.

        closed ──failures weigh `threshold` among the last `window` requests──► open
          ▲                                                                      │ cooldown
          └──────────── a success (of any URL) ◄── half-open: one probe ◄────────┘
                                                        │ fails: open again, the cooldown
                                                        ▼ doubled up to `cooldown_max`
        any state ── no success in the last `give_up_requests` requests, nor for
                     `give_up_after` seconds ──► given up (`open_until` is infinite)

    A failure is a 5xx, or no answer at all (refused, reset, timed out), which weighs two: a
    host that does not answer opens its circuit after two such requests, one that answers
    5xx after `threshold`. A 429 is neither (its Retry-After slows the host down). A retry that
    fails again counts toward giving up but does not open the circuit: a few bad pages retried
    on their own back-off never close a working host. While the circuit is open, every request
    waits for it (retries too: the failure may be the host's); its probes take turns between a
    URL that failed before (a flaky page's next attempt may well succeed) and one that has not.
    Any success of any of the host's URLs closes the circuit and clears the evidence, so a
    flaky host is slowed for seconds and never given up, while a host where nothing succeeds
    is given up after a handful of probes.
    """

    __slots__ = (
        "cooldown",
        "cooldown_max",
        "failures",
        "give_up_after",
        "give_up_requests",
        "open_until",
        "opens",
        "probing",
        "recent",
        "silent_since",
        "threshold",
    )

    def __init__(
        self,
        threshold: int,
        cooldown: float,
        *,
        window: int = 10,
        cooldown_max: float = 30.0,
        give_up_requests: int = 6,
        give_up_after: float = 60.0,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.cooldown_max = max(cooldown, cooldown_max)
        self.give_up_requests = give_up_requests
        self.give_up_after = give_up_after
        #: The weights of the last `window` requests' outcomes (0: a success).
        self.recent: deque[int] = deque(maxlen=max(window, 1))
        #: Failed requests since the last success.
        self.failures = 0
        self.opens = 0
        self.open_until = 0.0
        self.probing = False
        #: When the host's failures since its last success began (None: it succeeds).
        self.silent_since: float | None = None

    @property
    def closed(self) -> bool:
        return self.opens == 0

    @property
    def given_up(self) -> bool:
        return math.isinf(self.open_until)

    def record(self, health: Health, now: float, *, retry: bool = False) -> None:
        """The end of a request to the host, at `now`. A `retry` (of a URL that failed before)
        that fails again says more about its URL than about the host: it counts toward giving
        the host up, but does not open its circuit (the URL's own back-off paces it). A probe
        that fails, retry or not, keeps the circuit open for twice as long."""
        if health is Health.THROTTLED:
            self.probing = False  # the probe told nothing about health: another one, later
            return
        if health is Health.OK:
            if not self.closed:
                self.recent.clear()  # closed again: a fresh start
            self.recent.append(0)
            self.failures = self.opens = 0
            self.open_until = 0.0
            self.probing = False
            self.silent_since = None
            return
        self.failures += 1
        if self.silent_since is None:
            self.silent_since = now
        if self.given_up:
            return
        if self.useless(now):
            self.opens = max(self.opens, 1)
            self.open_until = math.inf
            return
        if not self.probing:
            if retry:
                return  # a URL failing again: its own back-off paces it
            self.recent.append(2 if health is Health.UNANSWERED else 1)
            if not self.closed or sum(self.recent) < self.threshold:
                return
        self.probing = False
        self.opens += 1
        pause = self.cooldown * 2 ** min(self.opens - 1, _MAX_DOUBLINGS)
        self.open_until = now + min(pause, self.cooldown_max)

    def useless(self, now: float) -> bool:
        """Nothing succeeded in the last `give_up_requests` requests, nor for `give_up_after`
        seconds: the evidence that gives a host up."""
        return (
            self.silent_since is not None
            and self.failures >= self.give_up_requests
            and now - self.silent_since >= self.give_up_after
        )

    def outage(self, now: float) -> float:
        """Seconds since the host's last success, while it fails (0 while it succeeds)."""
        return 0.0 if self.silent_since is None else now - self.silent_since

    @property
    def state(self) -> Circuit:
        if self.closed:
            return Circuit.CLOSED
        if self.given_up:
            return Circuit.GIVEN_UP
        return Circuit.HALF_OPEN if self.probing else Circuit.OPEN


class Pace:
    """How fast a politeness key (a host, or every host of one address or one domain) is
    crawled: at most `concurrency` requests in flight among its hosts, their starts paced by
    one token bucket (`rate`, or the stricter robots.txt Crawl-delay of any of them)."""

    __slots__ = ("bucket", "concurrency", "crawl_delay", "in_flight", "members")

    def __init__(self, concurrency: int, rate: float, *, now: float = 0.0) -> None:
        self.concurrency = concurrency
        self.in_flight = 0
        self.bucket = TokenBucket(rate, now=now)
        #: The bucket paces a Crawl-delay (stricter than the configured rate).
        self.crawl_delay = False
        #: Hosts sharing this pace.
        self.members = 1

    def slow_down(self, interval: float, now: float) -> None:
        """At least `interval` seconds between request starts (robots.txt Crawl-delay), the
        next one no sooner than `interval` after `now`: the stricter of this and the current
        pace wins."""
        if interval > 0:
            rate = 1.0 / interval
            if self.bucket.rate <= 0 or rate < self.bucket.rate:
                self.bucket = TokenBucket(rate, now=now)
                self.bucket.take(now)
                self.crawl_delay = True


def unknown_pace() -> Pace:
    """The pace of a host that may not start anything yet (its politeness key is not known)."""
    return Pace(0, 0.0)


class HostSlot:
    """One host's limits: its pace (see Pace: shared with the hosts of its politeness key, or
    its own), nothing before `not_before` (a back-off such as Retry-After), and nothing while
    its circuit breaker is open (then a single probe)."""

    __slots__ = ("breaker", "gated", "in_flight", "not_before", "pace")

    def __init__(
        self,
        concurrency: int,
        rate: float,
        *,
        now: float = 0.0,
        breaker: Breaker | None = None,
        gated: bool = False,
        pace: Pace | None = None,
    ) -> None:
        #: One request at a time until `open_gate()` (the host's robots.txt is not known yet).
        self.gated = gated
        #: This host's requests in flight (its pace counts those of every host sharing it).
        self.in_flight = 0
        self.pace = pace or Pace(concurrency, rate, now=now)
        self.not_before = 0.0
        self.breaker = breaker or Breaker(threshold=5, cooldown=30.0)

    @property
    def bucket(self) -> TokenBucket:
        return self.pace.bucket

    @property
    def full(self) -> bool:
        """No request may start now or later until one in flight ends."""
        pace = self.pace
        if pace.in_flight >= pace.concurrency:
            return True
        if self.breaker.closed:
            return self.gated and self.in_flight > 0
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
        return max(self.pace.bucket.available_at(now), self.not_before, self.breaker.open_until)

    def waiting(self, now: float) -> tuple[float, Wait] | None:
        """Seconds until the next request may start and what holds it back; None when one
        may start now (or only a free concurrency slot is awaited, or the host is given up)."""
        if self.breaker.given_up:
            return None
        paced = Wait.CRAWL_DELAY if self.pace.crawl_delay else Wait.RATE_LIMIT
        until, why = max(
            (self.breaker.open_until, Wait.CIRCUIT),
            (self.not_before, Wait.RETRY_AFTER),
            (self.pace.bucket.available_at(now), paced),
            key=lambda wait: wait[0],
        )
        return (until - now, why) if until > now else None

    def acquire(self, now: float) -> None:
        """A request starts: it takes a slot and a token (and is the probe of an open circuit)."""
        self.in_flight += 1
        pace = self.pace
        pace.in_flight += 1
        pace.bucket.take(now)
        if not self.breaker.closed:
            self.breaker.probing = True

    def release(
        self, health: Health | None = None, *, now: float = 0.0, retry: bool = False
    ) -> None:
        """A request finished. `health` is what it says about the host, None when it says
        nothing (no request went out: robots.txt disallowed it, the address was blocked);
        `retry`: it was a retry of a URL that failed before (see Breaker.record)."""
        if self.in_flight <= 0:
            raise RuntimeError("HostSlot.release() without a matching acquire()")
        self.in_flight -= 1
        self.pace.in_flight -= 1
        if health is not None:
            self.breaker.record(health, now, retry=retry)
        elif self.breaker.probing:
            self.breaker.probing = False  # the probe told nothing: probe again

    def back_off(self, until: float) -> None:
        """Start nothing on this host before `until` (never shortens an earlier back-off)."""
        self.not_before = max(self.not_before, until)

    def slow_down(self, interval: float, now: float) -> None:
        """At least `interval` seconds between request starts (robots.txt Crawl-delay; for
        every host of its pace)."""
        self.pace.slow_down(interval, now)

    def snapshot(self, host: str) -> HostState:
        """What of this slot should survive a crash or pass to the next holder of the host
        (probes, in-flight counts and the recent outcomes do not)."""
        breaker = self.breaker
        return HostState(
            host,
            self.not_before,
            breaker.failures,
            breaker.opens,
            breaker.open_until,
            breaker.silent_since,
        )

    def restore(self, state: HostState) -> None:
        """Take back a state saved by `snapshot` (in an earlier run, or another process)."""
        self.not_before = state.not_before
        self.breaker.failures = state.failures
        self.breaker.opens = state.opens
        self.breaker.open_until = state.open_until
        self.breaker.silent_since = state.silent_since

    def open_gate(self) -> None:
        """The host's robots.txt is known: allow its full concurrency."""
        self.gated = False
