"""Who serves which host: the frontier's host coordination.

A store of one process: this process serves every host, for good (`SoleHolder`), and the crawl
is finished when nothing is queued, buffered or in flight.

A shared store (many processes, see store/__init__): the frontier serves only the hosts it
holds a lease on (`SharedLeases`): one holder per host makes per-host politeness global. A
heartbeat renews the leases, takes more hosts while workers idle, hands hosts back when other
processes go hungry or a host runs dry, and stops serving a host whose lease it could not renew
in time (another process may hold it now). The crawl's `max_pages` is granted to each process
in chunks. The crawl is finished when the store says so for every process.

The frontier calls its coordination at five points (start, a lease taken, the page budget
spent, nothing ready, close); the coordination drives the frontier through its methods for it
(`take_hosts`, `entries`, `reschedule`, `drop`, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import TYPE_CHECKING, Protocol

from ..records import HostLease
from ..store import HostLeases

if TYPE_CHECKING:
    from .frontier import Frontier, HostEntry

log = logging.getLogger(__name__)


class HostCoordination(Protocol):
    """How the frontier learns which hosts it may serve, and when the crawl is over."""

    #: Whether a host is this process's as soon as it is known (no lease to wait for).
    holds_every_host: bool
    #: The crawl is over for every process (the frontier returns None once nothing is in
    #: flight).
    crawl_over: bool
    #: No more pages will be granted beyond the frontier's page budget.
    grants_over: bool

    async def start(self, frontier: Frontier) -> None:
        """Take the first hosts (and their politeness state)."""

    def on_lease(self, entry: HostEntry, lease: HostLease, sent: float, now: float) -> None:
        """The store granted `lease` (asked at `sent`, time.monotonic()): take it over."""

    def more_pages(self) -> bool:
        """The page budget is spent: whether more pages may still be granted (it asks)."""

    def idle(self, frontier: Frontier) -> bool:
        """No request is ready: whether the crawl is finished for this process."""

    async def close(self) -> None:
        """Stop any background work."""


class SoleHolder:
    """One process crawls from the store: it serves every host, for good."""

    holds_every_host = True
    crawl_over = False
    grants_over = True

    def __init__(self, store: HostLeases) -> None:
        self._store = store

    async def start(self, frontier: Frontier) -> None:
        for state in await self._store.host_states():
            frontier.restore(state)  # links to them follow its rules
        await frontier.take_hosts(0)  # a store of one process grants every host at once

    def on_lease(self, entry: HostEntry, lease: HostLease, sent: float, now: float) -> None:
        pass

    def more_pages(self) -> bool:
        return False

    def idle(self, frontier: Frontier) -> bool:
        return frontier.finished()

    async def close(self) -> None:
        pass


class SharedLeases:
    """Many processes crawl from the store: this one serves the hosts it holds a lease on."""

    holds_every_host = False

    def __init__(
        self,
        store: HostLeases,
        *,
        hosts_wanted: int,
        heartbeat: float,
        max_pages: int | None,
        host_budget: int | None,
        grant_chunk: int,
    ) -> None:
        self._store = store
        #: Hosts to hold when they have work, seconds between heartbeats, the crawl's
        #: max_pages (granted to this process `grant_chunk` at a time).
        self._hosts_wanted = hosts_wanted
        self._heartbeat = heartbeat
        self._max_pages = max_pages
        self._host_budget = host_budget
        self._grant_chunk = grant_chunk
        self.crawl_over = False
        self.grants_over = False
        self._grant_pending = False
        self._frontier: Frontier | None = None
        self._beat_task: asyncio.Task[None] | None = None
        self._started = time.monotonic()
        #: Set when workers idle for want of hosts: the heartbeat comes early.
        self._beat_now = asyncio.Event()

    async def start(self, frontier: Frontier) -> None:
        self._frontier = frontier
        self._started = time.monotonic()
        await self._acquire(frontier)
        self._beat_task = asyncio.create_task(self._beat(frontier))

    def on_lease(self, entry: HostEntry, lease: HostLease, sent: float, now: float) -> None:
        entry.held, entry.fence, entry.draining = True, lease.fence, False
        entry.deadline = sent + self._store.lease_ttl * 0.75
        entry.exhausted = False
        if lease.state is not None:
            entry.slot.restore(lease.state)
        if lease.start_in > 0:  # the previous holder's rate limit carries over
            entry.slot.back_off(now + lease.start_in)

    def more_pages(self) -> bool:
        if self.grants_over:
            return False
        self._ask_grant()
        return True

    def idle(self, frontier: Frontier) -> bool:
        if not frontier.has_ready_hosts and self._hungry(frontier):
            self._beat_now.set()  # nothing ready here: look for more hosts now
        return False

    async def close(self) -> None:
        if self._beat_task is not None:
            self._beat_task.cancel()
            await asyncio.gather(self._beat_task, return_exceptions=True)
        frontier = self._frontier
        if frontier is not None:
            # the pages settled since the last heartbeat (the last ones of the crawl, say):
            # the process's count in the store ends right (`stats` shows it per worker)
            with contextlib.suppress(Exception):  # (a store gone at the end loses a count)
                fetched = frontier.fetched_pages
                rate = fetched / max(time.monotonic() - self._started, 1e-9)
                await self._store.heartbeat([], fetched, rate, False)

    # -- leases and heartbeats ---------------------------------------------------------------

    async def _acquire(self, frontier: Frontier) -> None:
        """Lease hosts with work from the store, up to `hosts_wanted`."""
        want = self._hosts_wanted - self._working_hosts(frontier)
        if want > 0:
            await frontier.take_hosts(want)

    async def _beat(self, frontier: Frontier) -> None:
        """Every `heartbeat` seconds: renew the leases, hand back hosts that ran dry or that
        hungry processes should get, take more hosts when workers idle, and find out whether
        the crawl is over for everyone. A failing store ends the crawl loudly."""
        started = time.monotonic()
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._heartbeat):  # leases renewed in time
                        await self._beat_now.wait()
                    # poked: workers idle for want of hosts; ask the store at most 10x a second
                    await asyncio.sleep(0.1)
                self._beat_now.clear()
                await self._beat_once(frontier, started)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            frontier.fail(exc)

    async def _beat_once(self, frontier: Frontier, started: float) -> None:
        held = [e for e in frontier.entries() if e.held]
        sent = time.monotonic()
        hungry = self._hungry(frontier)
        fetched = frontier.fetched_pages
        rate = fetched / max(sent - started, 1e-9)
        kept, share = await self._store.heartbeat(
            [(e.name, e.fence) for e in held], fetched, rate, hungry
        )
        for entry in held:
            if entry.name in kept:
                entry.deadline = sent + self._store.lease_ttl * 0.75
                frontier.reschedule(entry)
            else:
                log.warning("lost the lease on host %s: another process holds it", entry.name)
                frontier.drop(entry)
        mine = [e for e in frontier.entries() if e.held and not e.draining]
        if share is not None and len(mine) > share:
            mine.sort(key=lambda e: (e.store_due is not None, e.pending, len(e.buffer)))
            for entry in mine[: len(mine) - share]:
                entry.draining = True  # handed back once nothing of it is in flight
        await self._hand_back(frontier)
        if hungry and not frontier.stopping:
            await self._acquire(frontier)
        if (
            frontier.finished()
            and not any(e.held for e in frontier.entries())
            and await self._store.crawl_done(self._host_budget, self._max_pages)
        ):
            self.crawl_over = True
        frontier.wake()

    def _working_hosts(self, frontier: Frontier) -> int:
        """Hosts held with rows in the store."""
        return sum(1 for e in frontier.entries() if e.held and e.store_due is not None)

    def _hungry(self, frontier: Frontier) -> bool:
        """Whether this process could serve more hosts than it holds with work."""
        return (
            self._working_hosts(frontier) < self._hosts_wanted and not frontier.budget_spent_here()
        )

    async def _hand_back(self, frontier: Frontier) -> None:
        """Release the held hosts that are draining or ran dry, with nothing in flight."""
        done = [
            e
            for e in frontier.entries()
            if e.held
            and e.pending == 0
            and not e.refilling
            and (e.draining or e.exhausted or (e.store_due is None and not e.buffer))
        ]
        if not done:
            return
        now = frontier.now()
        releases = []
        for entry in done:
            ready = entry.slot.ready_at(now)  # inf: given up, nothing to pace
            start_in = 0.0 if math.isinf(ready) else max(0.0, ready - now)
            releases.append((entry.name, entry.fence, start_in))
            frontier.drop(entry)
        await self._store.release_hosts(releases)

    # -- page grants -------------------------------------------------------------------------

    def _ask_grant(self) -> None:
        """Ask the store for more of the crawl's max_pages (one request at a time)."""
        if self._grant_pending or self._frontier is None:
            return
        frontier = self._frontier
        self._grant_pending = True

        async def grant() -> None:
            try:
                more = await self._store.grant_pages(self._grant_chunk, self._max_pages or 0)
                if more == 0:
                    self.grants_over = True
                frontier.grant(more)
            finally:
                self._grant_pending = False

        frontier.spawn(grant())
