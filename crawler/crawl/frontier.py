"""Which URL next: per-host ready queues fed from the store in batches (Mercator's design).

URLs live in the store; the frontier leases a small batch per host into memory and hands out
the next request whose host may start one now (a free concurrency slot, a token, no back-off),
using a heap of next-ready times. A slow or rate-limited host never blocks the others, and
memory grows with the number of hosts, not with the number of queued URLs.

It separates "nothing ready right now" (hosts cooling down: `next()` waits) from "finished"
(nothing queued, buffered or in flight: `next()` returns None).

Which hosts it may serve, and when the crawl is over, is its host coordination's say (see
leases.py): every host for good with a store of one process, the hosts it holds a lease on with
a shared store.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..clock import Clock
from ..net.politeness import (
    Breaker,
    Circuit,
    Health,
    HostHealth,
    HostSlot,
    Pace,
    Wait,
    host_health,
    unknown_pace,
)
from ..records import ErrorKind, HostLease, HostState, Outcome, State, StoredRequest
from ..store import HostLeases, Queue
from .leases import HostCoordination, SoleHolder

log = logging.getLogger(__name__)


class FrontierStore(Queue, HostLeases, Protocol):
    """The frontier's part of the store: the queue, and the hosts this process may serve."""


#: A host's politeness key (the hosts of one key share one pace: see politeness.Pace): the
#: key itself, or an awaitable of it (an address still to be resolved).
KeyOf = Callable[[str], str | Awaitable[str]]
#: A host's limits: (requests in flight at once, requests per second; 0: no limit).
Limits = Callable[[str], tuple[int, float]]


@dataclass(slots=True)
class HostEntry:
    """A host the frontier knows: its politeness slot, its buffered rows, its place in the
    heaps, and (see leases.py) whether this process serves it."""

    name: str
    slot: HostSlot
    buffer: deque[StoredRequest] = field(default_factory=deque)
    #: Earliest time the store may hold due rows of this host; None: it holds none.
    store_due: float | None = None
    #: Bumped whenever new rows may have reached the store (see `_refill`).
    generation: int = 0
    refilling: bool = False
    in_heap: bool = False
    #: The sequence number of its place in the heap (an older place is stale: skipped).
    heap_seq: int = 0
    #: The breaker gave up on this host: its URLs are failed instead of fetched.
    abandoned: bool = False
    #: Why its last failed request failed (for the message of its URLs, once given up).
    last_failure: str | None = None
    #: Whether the last probe of its open circuit was a retry (probes take turns).
    probe_retry: bool = False
    #: Pages of this host fetched (in earlier runs too; see `Outcome.fetched`), and handed
    #: out but not settled.
    fetched: int = 0
    pending: int = 0
    #: The host's page budget is spent: nothing more is leased or handed out for it.
    exhausted: bool = False
    #: The due time this host is filed under in the refill heap, if it is.
    filed_due: float | None = None
    #: This process may fetch from the host (always, on a store of one process), under the
    #: lease of this fencing token, until `deadline` (time.monotonic()).
    held: bool = True
    fence: int = 0
    deadline: float = math.inf
    #: Handed back to the store once nothing of it is in flight (another process wants it).
    draining: bool = False
    #: One of the hosts the crawl works on now (see `max_active_hosts`).
    active: bool = False
    #: Its politeness key, when the crawl paces hosts by a key of their own (see `KeyOf`).
    key: str = ""
    #: Its politeness state is kept in the store and not taken up yet (a crawl that evicts
    #: hosts): its first refill restores it.
    unrestored: bool = False


@dataclass(frozen=True, slots=True)
class HostStatus:
    """A host's politeness right now: requests in flight, seconds between request starts
    (rate limit or Crawl-delay; 0: none), seconds (of the wall clock) until its next request
    may start and what holds it back (None: nothing), its circuit breaker's state, and its
    health (see politeness.host_health) and why."""

    in_flight: int
    delay: float
    wait: float
    waiting_for: Wait | None
    circuit: Circuit
    health: HostHealth = HostHealth.OK
    why: str = ""


class Frontier:
    """Hands out leased requests host by host, within each host's politeness limits.

    Call `start()` once, then `next()` (one caller at a time: callers queue on a lock),
    `release(host)` when a fetch ends and `settle(outcomes)` once outcomes are committed.
    """

    def __init__(
        self,
        store: FrontierStore,
        *,
        per_host_concurrency: int,
        rate_limit: float,
        batch_size: int = 32,
        max_buffered: int = 4096,
        page_budget: int | None = None,
        breaker: Callable[[], Breaker] | None = None,
        gate_hosts: bool = False,
        host_budget: int | None = None,
        clock: Clock | None = None,
        coordination: HostCoordination | None = None,
        max_active_hosts: int | None = None,
        key_of: KeyOf | None = None,
        limits: Limits | None = None,
        max_hosts: int | None = None,
    ) -> None:
        self._store = store
        #: Which hosts this process serves (default: all, a store of one process).
        self._coordination = coordination or SoleHolder(store)
        self._per_host = per_host_concurrency
        self._rate = rate_limit
        self._batch = batch_size
        self._max_buffered = max_buffered
        self._budget = page_budget
        self._clock = clock or Clock()
        self._breaker = breaker or (lambda: Breaker(threshold=5, cooldown=30.0))
        self._gate_hosts = gate_hosts
        self._host_budget = host_budget
        self._hosts: dict[str, HostEntry] = {}
        #: Hosts are paced by their politeness key (None: each by itself), within the limits
        #: `limits` gives the first host of a key (None: the crawl's).
        self._key_of = key_of
        self._limits = limits
        #: The hosts of each politeness key (with `key_of`).
        self._members: dict[str, list[HostEntry]] = {}
        self._heap: list[tuple[float, int, HostEntry]] = []  # hosts with buffered requests
        self._due_heap: list[tuple[float, int, HostEntry]] = []  # hosts whose buffer needs a refill
        #: Hosts with rows in the store that the crawl does not work on yet, by due time: one
        #: becomes active when an active one has nothing left to do now (Mercator's back
        #: queues: a broad crawl finishes hosts while their connections are warm, instead of
        #: visiting every host in turn). None: every host is active.
        self._max_active = max_active_hosts
        self._waiting_heap: list[tuple[float, int, str]] = []
        #: At most this many hosts are kept in memory (None: every host known): an idle host
        #: beyond it is evicted (its politeness state is in the store already), and a host
        #: with rows due in the store is then only its name and due time here (`_dormant`),
        #: until it becomes active again. A store of one process, no host budgets.
        self._max_hosts = max_hosts
        self._dormant: dict[str, float] = {}
        #: Hosts evicted in this run, the most held at once; `on_evict(host)` hears of each.
        self.hosts_evicted = 0
        self.hosts_peak = 0
        self.on_evict: Callable[[str], None] | None = None
        self._active = 0
        self._due_hosts = 0  # hosts whose store_due is not None
        self._seq = 0
        self._buffered = 0
        self._refills = 0
        self._in_flight = 0  # handed out by next(), not yet settled
        self._fetched_pages = 0  # done or failed in this run, after a request went out
        #: URLs failed because their host was given up, in this run.
        self.abandoned_pages = 0
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._error: BaseException | None = None
        #: Hosts whose politeness state changed since `take_changed_hosts()`.
        self._changed: set[str] = set()
        #: With `max_hosts`: the hosts whose politeness state the store may keep (kept by an
        #: earlier run, or changed in this one), restored when they are held again.
        self._stateful: set[str] = set()

    async def start(self) -> None:
        """Take the hosts with queued rows (on a shared store, a fair share of those no other
        process holds) with their politeness state and pages fetched so far."""
        await self._coordination.start(self)
        self._wakeup.set()

    def _take_lease(self, lease: HostLease, sent: float) -> None:
        if self._max_hosts is not None and lease.host not in self._hosts:
            self._file_dormant(lease.host, 0.0)  # its state is restored once it is worked on
            return
        entry = self._host(lease.host)
        self._coordination.on_lease(entry, lease, sent, self._clock.now())
        entry.abandoned = entry.slot.given_up  # new links fail at once, as before the restart
        if self._host_budget is not None:
            entry.fetched = lease.fetched
        if self._host_spent(entry):
            entry.exhausted = True  # spent in earlier runs: its rows stay queued
        else:
            self._set_due(entry, 0.0)  # a lease finds out when its rows are due

    # -- the interface ---------------------------------------------------------------------

    async def next(self) -> StoredRequest | None:
        """The next request to fetch, waiting until a host is ready. None once the crawl is
        finished (or the page budget is spent, or `stop()` was called)."""
        async with self._lock:
            while True:
                if self._error is not None:
                    raise self._error
                if self._stopping:
                    return None
                now = self._clock.now()
                if self._coordination.crawl_over and self._in_flight == 0:
                    return None
                if self._budget_spent():
                    if not self._coordination.more_pages() and self._in_flight == 0:
                        return None
                    wait = math.inf
                else:
                    self._start_refills(now)
                    request, wait = self._pop_ready(now)
                    if request is not None:
                        return request
                    if self._refills == 0:  # a worker idles, nothing is on its way
                        self._activate_one(now)  # work on one more host
                    if self._coordination.idle(self):
                        return None
                    wait = min(wait, self._next_store_due(now))
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    real = None if math.isinf(wait) else self._clock.real(max(wait, 0))
                    async with asyncio.timeout(real):
                        await self._wakeup.wait()

    def release(
        self,
        host: str,
        health: Health | None = None,
        wait_until: float | None = None,
        why: str | None = None,
        retry: bool = False,
    ) -> None:
        """A fetch of `host` ended: its concurrency slot is free again. `health` feeds the
        host's circuit breaker (see HostSlot.release; `retry`: the URL had failed before);
        `wait_until` (epoch seconds) holds every request to the host until then
        (Retry-After); `why` says why it failed, if it did. A host the breaker gives up on
        (nothing of it succeeds any more) is abandoned: its URLs are failed as
        "host_unavailable"."""
        entry = self._hosts[host]
        now = self._clock.now()
        before = entry.slot.snapshot(host)
        entry.slot.release(health, now=now, retry=retry)
        if why is not None and health is not None and health is not Health.OK:
            entry.last_failure = why
        if wait_until is not None:
            entry.slot.back_off(wait_until)
        if entry.slot.snapshot(host) != before:
            self._changed.add(host)
        if entry.slot.given_up and not entry.abandoned:
            entry.abandoned = True
            log.warning("giving up on host %s: %s", host, self._evidence(entry, now))
            self._set_due(entry, now)
        self._push_with_pace(entry, now)
        self._wakeup.set()

    def refund(self, host: str) -> None:
        """A request of `host` was answered by the HTTP cache: its token goes back, so cached
        pages do not count against the host's rate limit."""
        entry = self._hosts[host]
        now = self._clock.now()
        entry.slot.bucket.give_back(now)
        entry.in_heap = False  # its place, made for a later time, goes stale: a new one
        self._push_with_pace(entry, now)
        self._wakeup.set()

    def charge(self, host: str) -> None:
        """A request went to `host` besides its pages (a rendered page's script or XHR): it
        takes a token, so the host's rate limit and Crawl-delay hold for it too (its next page
        waits). A host the crawl has no pages of is not paced."""
        entry = self._hosts.get(host)
        if entry is not None:
            entry.slot.bucket.take(self._clock.now())

    def host_rules(self, host: str, interval: float) -> None:
        """`host`'s robots.txt is known: at least `interval` seconds between request starts
        (its Crawl-delay; 0 for none), and its full concurrency from now on."""
        entry = self._host(host)
        now = self._clock.now()
        entry.slot.slow_down(interval, now)
        entry.slot.open_gate()
        self._push(entry, now)
        self._wakeup.set()

    def take_changed_hosts(self) -> list[HostState]:
        """The politeness states that changed since the last call (to be committed with the
        outcomes that changed them)."""
        names = sorted(self._changed)
        changed = [self._hosts[host].slot.snapshot(host) for host in names]
        self._changed.clear()
        if self._max_hosts is not None:
            self._stateful.update(names)
            now = self._clock.now()
            for host in names:
                entry = self._hosts.get(host)
                if entry is not None:
                    self._retire_if_idle(entry, now)
        return changed

    def host_state(self, host: str) -> Circuit:
        """The host's circuit state."""
        entry = self._hosts.get(host)
        return entry.slot.breaker.state if entry else Circuit.CLOSED

    def settle(self, outcomes: Iterable[Outcome]) -> None:
        """Outcomes of handed-out requests are committed: their hosts may have new rows in the
        store (the links they found, now; a retry, at its not-before time). Only pages
        fetched count toward the page budgets (see `Outcome.fetched`)."""
        now = self._clock.now()
        for outcome in outcomes:
            self._in_flight -= 1
            entry = self._hosts[outcome.request.host]
            entry.pending -= 1
            if outcome.lost:
                continue  # another process holds the host: its outcome was refused
            if outcome.state is State.QUEUED:
                self.notify(outcome.request.host, outcome.not_before)
            elif outcome.fetched:
                self._fetched_pages += 1
                entry.fetched += 1
                if self._host_spent(entry):
                    self._exhaust(entry)
            self._push(entry, now)  # it may have been set aside while its budget looked spent
            for link in outcome.links:
                self.notify(link.host, now)
            self._retire_if_idle(entry, now)
        self._wakeup.set()

    def notify(self, host: str, due: float) -> None:
        """Rows of `host` due at `due` may have been added to the store."""
        if (
            self._max_hosts is not None
            and host not in self._hosts
            and (host in self._dormant or len(self._hosts) >= self._max_hosts)
        ):  # not held (the limit is reached): filed by name until it is worked on
            self._file_dormant(host, due)
            self._wakeup.set()
            return
        entry = self._host(host)
        if entry.exhausted or not entry.held:
            return  # not ours: its holder (or the next one) finds them
        entry.generation += 1
        self._set_due(entry, due if entry.store_due is None else min(entry.store_due, due))
        self._wakeup.set()

    def stop(self) -> None:
        """Hand out nothing more; `next()` returns None from now on."""
        self._stopping = True
        self._wakeup.set()

    async def aclose(self) -> None:
        """Wait for refills under way (their rows stay leased; the store releases them)."""
        await self._coordination.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def budget_spent(self) -> bool:
        return self._budget_spent() and self._coordination.grants_over

    def host_in_flight(self, host: str) -> int:
        entry = self._hosts.get(host)
        return entry.slot.in_flight if entry else 0

    def host_status(self) -> dict[str, HostStatus]:
        """Each known host's politeness, as of now (for progress displays)."""
        now = self._clock.now()
        status = {}
        for name, entry in self._hosts.items():
            slot = entry.slot
            rate = slot.bucket.rate
            waiting = slot.waiting(now) if entry.buffer else None
            if not entry.buffer and entry.store_due is not None and entry.store_due > now:
                waiting = (entry.store_due - now, Wait.RETRY)  # what it has left are retries
            health, why = host_health(slot.snapshot(name), now)
            status[name] = HostStatus(
                in_flight=slot.in_flight,
                delay=1.0 / rate if rate > 0 else 0.0,
                wait=self._clock.real(waiting[0]) if waiting else 0.0,
                waiting_for=waiting[1] if waiting else None,
                circuit=slot.breaker.state,
                health=health,
                why=why,
            )
        return status

    # -- scheduling ------------------------------------------------------------------------

    def _host(self, name: str) -> HostEntry:
        entry = self._hosts.get(name)
        if entry is None:
            concurrency, rate = self._limits(name) if self._limits else (self._per_host, self._rate)
            entry = self._hosts[name] = HostEntry(
                name,
                HostSlot(
                    concurrency,
                    rate,
                    now=self._clock.now(),
                    breaker=self._breaker(),
                    gated=self._gate_hosts,
                    pace=None if self._key_of is None else unknown_pace(),
                ),
                held=self._coordination.holds_every_host,
            )
            entry.unrestored = name in self._stateful
            due = self._dormant.pop(name, None) if self._dormant else None
            if due is not None:  # it was dormant: its rows' due time, its filing by name
                entry.store_due = entry.filed_due = due  # (still one of the hosts with rows due)
            if len(self._hosts) > self.hosts_peak:
                self.hosts_peak = len(self._hosts)
            if self._key_of is not None:
                key = self._key_of(name)
                if isinstance(key, str):
                    self._join(entry, key, concurrency, rate)
                else:  # nothing of it starts until its key is known
                    self._spawn(self._key_known(entry, key, concurrency, rate), None)
        return entry

    async def _key_known(
        self, entry: HostEntry, key: Awaitable[str], concurrency: int, rate: float
    ) -> None:
        known = await key
        if self._hosts.get(entry.name) is entry:  # (not evicted meanwhile)
            self._join(entry, known, concurrency, rate)
            self._push(entry, self._clock.now())

    def _join(self, entry: HostEntry, key: str, concurrency: int, rate: float) -> None:
        """The host is paced with the other hosts of its politeness key `key` (by the limits
        of the first of them)."""
        entry.key = key
        members = self._members.setdefault(key, [])
        if members:
            pace = members[0].slot.pace
            pace.members += 1
        else:
            pace = Pace(concurrency, rate, now=self._clock.now())
        entry.slot.pace = pace
        members.append(entry)

    def _push_with_pace(self, entry: HostEntry, now: float) -> None:
        """The host may start again, and so may the hosts sharing its pace (it freed a slot
        or a token of theirs)."""
        self._push(entry, now)
        if entry.slot.pace.members > 1:
            for other in self._members[entry.key]:
                self._push(other, now)

    # -- for the host coordination (see leases.py) -------------------------------------------

    def restore(self, state: HostState) -> None:
        """Take up a host's politeness state kept by an earlier run."""
        if self._max_hosts is not None:  # taken up when the crawl works on the host
            self._stateful.add(state.host)
            return
        entry = self._host(state.host)
        entry.slot.restore(state)
        entry.abandoned = entry.slot.given_up  # its new links fail at once

    async def take_hosts(self, want: int) -> None:
        """Lease up to `want` hosts with work from the store (see Store.acquire_hosts)."""
        sent = time.monotonic()
        for lease in await self._store.acquire_hosts(want, self._host_budget):
            self._take_lease(lease, sent)

    def entries(self) -> list[HostEntry]:
        return list(self._hosts.values())

    def reschedule(self, entry: HostEntry) -> None:
        """The host may be ready again: give it its place in the heap."""
        self._push(entry, self._clock.now())

    def drop(self, entry: HostEntry) -> None:
        """Serve the host no more (its lease was lost or handed back): forget its buffer."""
        entry.held = entry.draining = False
        self._buffered -= len(entry.buffer)
        entry.buffer.clear()
        self._set_due(entry, None)
        self._retire_if_idle(entry, self._clock.now())

    def grant(self, pages: int) -> None:
        """Raise the page budget by `pages`."""
        self._budget = (self._budget or 0) + pages

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._spawn(work, None)

    def fail(self, exc: BaseException) -> None:
        """End the crawl: the next `next()` raises `exc`."""
        self._error = exc
        self._wakeup.set()

    def wake(self) -> None:
        self._wakeup.set()

    def now(self) -> float:
        return self._clock.now()

    def finished(self) -> bool:
        """Nothing of this process is queued, buffered or in flight."""
        return self._finished()

    def budget_spent_here(self) -> bool:
        """This process's page budget is spent (more may be granted)."""
        return self._budget_spent()

    @property
    def has_ready_hosts(self) -> bool:
        return bool(self._heap)

    @property
    def fetched_pages(self) -> int:
        """Pages done or failed in this run, after a request went out."""
        return self._fetched_pages

    @property
    def stopping(self) -> bool:
        return self._stopping

    def _push(self, entry: HostEntry, now: float) -> None:
        if entry.in_heap or not entry.buffer or entry.slot.full or entry.abandoned:
            return
        self._seq += 1
        heapq.heappush(self._heap, (entry.slot.ready_at(now), self._seq, entry))
        entry.in_heap = True
        entry.heap_seq = self._seq

    def _pop_ready(self, now: float) -> tuple[StoredRequest | None, float]:
        """The request of the readiest host if it may start now, else how long to wait."""
        while self._heap:
            at, seq, entry = self._heap[0]
            if seq != entry.heap_seq:  # moved up since (see refund)
                heapq.heappop(self._heap)
                continue
            if at > now:
                return None, at - now
            heapq.heappop(self._heap)
            entry.in_heap = False
            if not entry.buffer or entry.slot.full or entry.abandoned:
                continue
            if not entry.held or entry.draining or time.monotonic() > entry.deadline:
                continue  # not ours (any more), or not sure it still is: the heartbeat tells
            ready = entry.slot.ready_at(now)
            if ready > now:  # a back-off arrived since it was pushed
                self._push(entry, now)
                continue
            if self._host_spent(entry):
                continue  # budget spent (pages in flight may still settle it as exhausted)
            request = self._take(entry)
            self._buffered -= 1
            entry.slot.acquire(now)
            entry.pending += 1
            self._in_flight += 1
            self._push(entry, now)
            self._file_for_refill(entry)
            return request, 0.0
        return None, math.inf

    @staticmethod
    def _take(entry: HostEntry) -> StoredRequest:
        """The host's next request. The probes of an open circuit take turns between a URL
        that failed before (a flaky page's next attempt may succeed) and one that has not (a
        bad page's next attempt says more about the page than about its host), when the
        buffer holds both."""
        buffer = entry.buffer
        if not entry.slot.breaker.closed:
            entry.probe_retry = not entry.probe_retry
            for request in buffer:
                if bool(request.attempts) == entry.probe_retry:
                    buffer.remove(request)
                    return request
        return buffer.popleft()

    def _host_spent(self, entry: HostEntry) -> bool:
        budget = self._host_budget
        return budget is not None and entry.fetched + entry.pending >= budget

    def _exhaust(self, entry: HostEntry) -> None:
        """The host's budget is spent: hand its buffered rows back to the queue and stop
        looking for more, so the crawl can end with them queued."""
        if entry.exhausted or entry.fetched < (self._host_budget or 0):
            return
        entry.exhausted = True
        self._set_due(entry, None)
        self._return_buffer(entry)

    def _return_buffer(self, entry: HostEntry) -> None:
        """Give an exhausted host's buffered rows back to the queue."""
        if entry.buffer:
            leased = [request.id for request in entry.buffer]
            self._buffered -= len(leased)
            entry.buffer.clear()
            self._spawn(self._give_back(leased), None)

    async def _give_back(self, leased: list[int]) -> None:
        await self._store.release(leased)

    def _budget_spent(self) -> bool:
        return self._budget is not None and self._fetched_pages + self._in_flight >= self._budget

    def _finished(self) -> bool:
        return (
            not self._heap
            and self._buffered == 0
            and self._refills == 0
            and self._in_flight == 0
            and self._due_hosts == 0
        )

    def _next_store_due(self, now: float) -> float:
        if self._buffered >= self._max_buffered:
            return math.inf
        due = self._due_heap[0][0] if self._due_heap else math.inf
        if self._waiting_heap and self._may_activate():
            due = min(due, self._waiting_heap[0][0])
        return max(due - now, 0.0)

    def _may_activate(self) -> bool:
        return self._max_active is None or self._active < self._max_active

    def _set_due(self, entry: HostEntry, due: float | None) -> None:
        if (entry.store_due is None) != (due is None):
            self._due_hosts += 1 if due is not None else -1
        entry.store_due = due
        self._file_for_refill(entry)
        if due is None:
            self._retire_if_idle(entry, self._clock.now())

    def _retire_if_idle(self, entry: HostEntry, now: float) -> None:
        """An active host with nothing to do now (nothing buffered, in flight or being leased,
        no rows due in the store) makes room for a waiting one; it waits again when rows of
        it come due."""
        busy = bool(entry.buffer) or entry.pending > 0 or entry.refilling
        if entry.active and not busy and (entry.store_due is None or entry.store_due > now):
            entry.active = False
            self._active -= 1
            if entry.store_due is not None:  # rows due later: it waits for them with the rest
                entry.filed_due = None
                self._file_for_refill(entry)
        if (
            self._max_hosts is not None
            and len(self._hosts) > self._max_hosts
            and not (entry.active or busy or entry.slot.in_flight)
            and entry.name not in self._changed  # (its state is not in the store yet)
        ):
            self._evict(entry)

    def _evict(self, entry: HostEntry) -> None:
        """Forget an idle host (its state is in the store; see `max_hosts`): with rows due in
        the store, it stays filed by name (still counted among the hosts with rows due)."""
        name = entry.name
        del self._hosts[name]
        if entry.store_due is not None:
            if entry.filed_due is None:  # not filed yet: filed by name now
                self._seq += 1
                heapq.heappush(self._waiting_heap, (entry.store_due, self._seq, name))
                entry.filed_due = entry.store_due
            self._dormant[name] = entry.filed_due
        if entry.key:
            members = self._members[entry.key]
            members.remove(entry)
            entry.slot.pace.members -= 1
            if not members:
                del self._members[entry.key]
        self.hosts_evicted += 1
        if self.on_evict is not None:
            self.on_evict(name)

    def _file_dormant(self, name: str, due: float) -> None:
        """A host not in memory has rows due at `due` in the store."""
        filed = self._dormant.get(name)
        if filed is not None and filed <= due:
            return
        if filed is None:
            self._due_hosts += 1
        self._dormant[name] = due
        self._seq += 1
        heapq.heappush(self._waiting_heap, (due, self._seq, name))

    def _filed(self, name: str, filed: float) -> HostEntry | None:
        """The host of a filing in the waiting heap (made again if it was evicted), or None
        when the filing is stale (the host was filed again since, earlier)."""
        entry = self._hosts.get(name)
        if entry is not None:
            return entry if entry.filed_due == filed else None
        if self._dormant.get(name) != filed:
            return None
        return self._host(name)  # made again, filed as it was

    def _file_for_refill(self, entry: HostEntry) -> None:
        """File the host in the refill heap when its buffer is low and the store has rows (in
        the waiting heap, when the crawl does not work on it now)."""
        due = entry.store_due
        if (
            due is None
            or entry.exhausted
            or entry.refilling
            or (len(entry.buffer) > self._batch // 2 and not entry.abandoned)
            or (entry.filed_due is not None and entry.filed_due <= due)
        ):
            return
        self._seq += 1
        if entry.active or self._max_active is None:
            heapq.heappush(self._due_heap, (due, self._seq, entry))
        else:
            heapq.heappush(self._waiting_heap, (due, self._seq, entry.name))
        entry.filed_due = due

    def _start_refills(self, now: float) -> None:
        while self._due_heap and self._due_heap[0][0] <= now:
            if self._buffered >= self._max_buffered:
                return
            filed, _, entry = heapq.heappop(self._due_heap)
            if entry.filed_due != filed:
                continue  # a stale filing: the host was filed again, earlier
            entry.filed_due = None
            if not entry.active and self._max_active is not None:
                self._file_for_refill(entry)  # retired since: it waits with the rest
                continue
            self._begin_refill(entry, now)
        while self._waiting_heap and self._waiting_heap[0][0] <= now and self._may_activate():
            if self._buffered >= self._max_buffered:
                return
            self._activate_one(now)

    def _activate_one(self, now: float) -> None:
        """Make the first waiting host with rows due active, beyond `max_active_hosts`: the
        limit keeps a broad crawl on few hosts only while they keep the workers busy."""
        while self._waiting_heap and self._waiting_heap[0][0] <= now:
            if self._buffered >= self._max_buffered:
                return
            filed, _, name = heapq.heappop(self._waiting_heap)
            entry = self._filed(name, filed)
            if entry is None:
                continue  # a stale filing
            entry.filed_due = None
            if not entry.active:
                entry.active = True
                self._active += 1
            self._begin_refill(entry, now)
            return

    def _begin_refill(self, entry: HostEntry, now: float) -> None:
        """Lease the host's due rows (or fail them, for a host given up on), unless it needs
        none now."""
        due = entry.store_due
        if due is None or entry.refilling:
            self._retire_if_idle(entry, now)
            return
        if len(entry.buffer) > self._batch // 2 and not entry.abandoned:
            return
        if due > now:
            self._file_for_refill(entry)
            self._retire_if_idle(entry, now)
            return
        entry.refilling = True
        work = self._abandon if entry.abandoned else self._refill
        self._spawn(work(entry, now), entry)

    def _spawn(self, work: Coroutine[Any, Any, None], entry: HostEntry | None) -> None:
        """Run store work for the frontier in the background. While it runs the crawl cannot
        be finished; a store failure is raised by the next `next()`, ending the crawl loudly."""
        self._refills += 1

        async def run() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                self._error = exc
            finally:
                self._refills -= 1
                if entry is not None:
                    entry.refilling = False
                    self._push(entry, self._clock.now())
                self._wakeup.set()

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _evidence(self, entry: HostEntry, now: float) -> str:
        """Why a host was given up, in words."""
        breaker = entry.slot.breaker
        last = f" (last: {entry.last_failure})" if entry.last_failure else ""
        return (
            f"none of its last {breaker.failures} requests succeeded, none for "
            f"{breaker.outage(now):.0f} s{last}"
        )

    async def _abandon(self, entry: HostEntry, now: float) -> None:
        """Fail the host's buffered and queued URLs (a refill, for a host given up on)."""
        generation = entry.generation
        leased = [request.id for request in entry.buffer]
        self._buffered -= len(leased)
        entry.buffer.clear()
        failed = await self._store.fail_host(
            entry.name,
            leased,
            error=ErrorKind.HOST_UNAVAILABLE,
            message=f"host {entry.name} given up: {self._evidence(entry, now)}",
        )
        self.abandoned_pages += failed  # never fetched: the page budget does not count them
        entry.refilling = False
        self._set_due(entry, 0.0 if entry.generation != generation else None)

    async def _refill(self, entry: HostEntry, now: float) -> None:
        if entry.unrestored:  # its politeness state, if the store keeps one
            entry.unrestored = False
            for state in await self._store.host_states(entry.name):
                entry.slot.restore(state)
            if entry.slot.given_up:
                entry.abandoned = True
                await self._abandon(entry, now)
                return
        generation = entry.generation
        want = self._batch - len(entry.buffer)
        rows = await self._store.lease(entry.name, want, now)
        if not entry.held:  # lost meanwhile: those rows are the next holder's
            entry.refilling = False
            return
        entry.buffer.extend(rows)
        self._buffered += len(rows)
        if entry.exhausted:  # its budget ran out while this refill was under way
            entry.refilling = False
            self._return_buffer(entry)
            return
        due: float | None = 0.0
        if len(rows) < want:
            due = await self._store.next_due(entry.name)
        if entry.generation != generation:
            due = 0.0  # rows may have arrived meanwhile: look again
        entry.refilling = False
        self._set_due(entry, due)
