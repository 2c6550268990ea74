"""The Store in memory: the reference implementation of the protocol (see store/__init__).

It says in plain Python what the SQL of the other backends does, and passes the same contract
suite (tests/test_store_contract.py). It keeps nothing on disk: a crawl on it cannot resume
after its process ends, and it scans its rows where the SQL backends have indexes: use it for
tests and small one-off crawls:

    database = MemoryDatabase()                    # outlives the stores opened on it
    store = await MemoryStore.open("my-spider", database=database)
    await Crawler(MySpider, settings, store=store).run()
    print([item async for item in store.items()])

Each call yields to the event loop once before it reads or writes (as a real store's I/O
does), then runs to its end without another await: a call is atomic, and one cancelled before
it ran did nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from ..errors import ConfigError, StoreError
from ..records import (
    LATENCY_BOUNDS,
    REVISIT_CHANGED,
    REVISIT_QUEUED,
    STATE_MARK,
    UNCHANGED_BY_SITEMAP,
    Counts,
    FileRecord,
    Fingerprint,
    HostLease,
    HostState,
    NewRequest,
    Outcome,
    State,
    StoredRequest,
    Summary,
    WorkerInfo,
    duplicate_dict,
    failure_dict,
    host_summaries,
    revisit_mark,
)
from ..stats import add as add_counters
from .shared import (
    REDIRECTED,
    REPLACING,
    bucket_seconds,
    commit_counters,
    count_unchanged,
    crawled_on_its_own,
    sitemap_dated,
    unchanged_by_sitemap,
)


@dataclass(slots=True)
class _Row:
    """One request: the columns of the SQL backends' requests table."""

    id: int
    url: str
    host: str
    callback: str
    priority: int = 0
    depth: int = 0
    meta: str | None = None
    any_content_type: bool = False
    state: State = State.QUEUED
    not_before: float = 0.0
    attempts: int = 0
    lease: str | None = None
    status: int | None = None
    error: str | None = None
    message: str | None = None
    updated: float | None = None
    latency: float | None = None
    size: int | None = None
    key: str | None = None
    method: str | None = None
    body: bytes | None = None
    errback: str | None = None
    spec: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    revisit: int = 0

    @property
    def fetched(self) -> bool:
        """Done or failed after a request went out (see Outcome.fetched)."""
        return self.state >= State.DONE and self.latency is not None

    @property
    def finished(self) -> bool:
        return self.state >= State.DONE


@dataclass
class MemoryDatabase:
    """What a crawl on a MemoryStore keeps: it outlives the stores opened on it (a new
    store on it is what a restarted process would see), not the Python process."""

    spider: str | None = None
    rows: dict[int, _Row] = field(default_factory=dict)
    #: Row id by request identity (canonical URL, or key).
    identities: dict[str, int] = field(default_factory=dict)
    #: Item id -> (row id, JSON text), in commit order.
    items: dict[int, tuple[int, str]] = field(default_factory=dict)
    robots: dict[str, tuple[float, str | None]] = field(default_factory=dict)
    hosts: dict[str, HostState] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    marks: dict[str, str] = field(default_factory=dict)
    #: Row id -> the page's fingerprint (settings.duplicates).
    fingerprints: dict[int, Fingerprint] = field(default_factory=dict)
    #: URL -> a file stored whole (settings.files_store).
    files: dict[str, FileRecord] = field(default_factory=dict)
    next_row: int = 1
    next_item: int = 1
    #: A store is open on it (one at a time, as a SQLite file's lock allows).
    in_use: bool = False

    def clear(self) -> None:
        fresh = MemoryDatabase()
        for name in ("spider", "rows", "identities", "items", "robots", "hosts"):
            setattr(self, name, getattr(fresh, name))
        for name in (
            "sessions",
            "counters",
            "marks",
            "fingerprints",
            "files",
            "next_row",
            "next_item",
        ):
            setattr(self, name, getattr(fresh, name))


class MemoryStore:
    """The Store in memory (one process; see the module's docstring)."""

    shared = False
    lease_ttl = float("inf")
    location = "memory"
    outdated = False

    def __init__(self, database: MemoryDatabase) -> None:
        self._db = database
        self._run_id = f"run-{time.time_ns()}"
        self._closed = False

    @classmethod
    async def open(
        cls, spider_name: str, *, database: MemoryDatabase | None = None, fresh: bool = False
    ) -> MemoryStore:
        """Open the crawl of `spider_name` kept in `database` (a new one when None). Leases
        left by an earlier store on it are reclaimed; `fresh` forgets what it held."""
        db = database if database is not None else MemoryDatabase()
        if db.in_use:
            raise StoreError("the memory store is in use by a running crawl")
        if fresh:
            db.clear()
        if db.spider is not None and db.spider != spider_name:
            raise ConfigError(
                f"the memory store belongs to spider {db.spider!r}, not {spider_name!r}"
            )
        db.spider = spider_name
        for row in db.rows.values():
            if row.state is State.LEASED:
                row.state, row.lease = State.QUEUED, None
        db.in_use = True
        return cls(db)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.in_use = False

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def in_use(self) -> bool:
        return self._db.in_use

    async def _turn(self) -> None:
        """Yield to the event loop, as a store's I/O would; refuse a closed store."""
        await asyncio.sleep(0)
        if self._closed:
            raise StoreError("the memory store is closed")

    # -- Queue -------------------------------------------------------------------------------

    async def add(self, requests: Sequence[NewRequest]) -> None:
        await self._turn()
        self._insert(requests)

    async def lease(self, host: str, limit: int, now: float) -> list[StoredRequest]:
        await self._turn()
        due = sorted(
            (r for r in self._rows(State.QUEUED, host) if r.not_before <= now),
            key=lambda r: (-r.priority, r.id),
        )[:limit]
        for row in due:
            row.state, row.lease = State.LEASED, self._run_id
        return [
            StoredRequest(
                r.id,
                r.url,
                r.host,
                r.callback,
                r.priority,
                r.depth,
                r.meta,
                r.any_content_type,
                r.attempts,
                r.method,
                r.body,
                r.errback,
                r.spec,
                r.etag,
                r.last_modified,
                r.revisit == REVISIT_QUEUED,
            )
            for r in due
        ]

    async def next_due(self, host: str) -> float | None:
        await self._turn()
        return min((r.not_before for r in self._rows(State.QUEUED, host)), default=None)

    async def release(self, ids: Sequence[int] | None = None) -> int:
        await self._turn()
        if ids is None:
            rows = [r for r in self._rows(State.LEASED) if r.lease == self._run_id]
        else:
            rows = [r for i in ids if (r := self._db.rows.get(i)) and r.state is State.LEASED]
        for row in rows:
            row.state, row.lease = State.QUEUED, None
        return len(rows)

    async def fail_host(self, host: str, leased: Sequence[int], *, error: str, message: str) -> int:
        await self._turn()
        rows = list(self._rows(State.QUEUED, host))
        rows += [r for i in leased if (r := self._db.rows.get(i)) and r.state is State.LEASED]
        now = time.time()
        for row in rows:
            row.state, row.error, row.message, row.updated = State.FAILED, error, message, now
            row.latency = row.size = row.lease = None
        return len(rows)

    async def requeue_stale(self, before: float) -> int:
        await self._turn()
        for row in self._db.rows.values():
            if row.revisit == REVISIT_CHANGED:  # a new revisit: old news
                row.revisit = 0
        stale = [
            r
            for r in self._rows(State.DONE)
            if r.updated is not None and r.updated < before and r.message != REDIRECTED
        ]
        for row in stale:
            row.state, row.revisit, row.attempts, row.not_before = State.QUEUED, 1, 0, 0.0
        return len(stale)

    async def requeue_failed(self, host: str | None = None, error: str | None = None) -> int:
        await self._turn()
        for name in [h for h in self._db.hosts if host is None or h == host]:
            del self._db.hosts[name]  # a fresh start: a breaker that gave up would fail them
        rows = [r for r in self._rows(State.FAILED, host) if error is None or r.error == error]
        for row in rows:
            row.state, row.attempts, row.not_before = State.QUEUED, 0, 0.0
            row.error = row.message = row.status = None
        return len(rows)

    async def callbacks_pending(self, known: Callable[[str], bool]) -> set[str]:
        await self._turn()
        names = set()
        for row in self._db.rows.values():
            if row.state <= State.LEASED:
                names.add(row.callback)
                if row.errback is not None:
                    names.add(row.errback)
        return {name for name in names if not known(name)}

    # -- HostLeases (one process: every host, for good) --------------------------------------

    async def acquire_hosts(self, limit: int, host_budget: int | None) -> list[HostLease]:
        await self._turn()
        totals = self._totals()
        return [
            HostLease(
                host,
                0,
                self._db.hosts.get(host),
                totals[host].fetched if host_budget is not None else 0,
            )
            for host in sorted(totals)
            if totals[host].queued
        ]

    async def host_states(self, host: str | None = None) -> list[HostState]:
        await self._turn()
        hosts = sorted(self._db.hosts) if host is None else [host]
        return [self._db.hosts[name] for name in hosts if name in self._db.hosts]

    async def heartbeat(
        self, held: Sequence[tuple[str, int]], pages: int, rate: float, hungry: bool
    ) -> tuple[set[str], int | None]:
        await self._turn()
        return {host for host, _ in held}, None

    async def release_hosts(self, hosts: Sequence[tuple[str, int, float]]) -> None:
        await self._turn()
        for host, _, _ in hosts:
            for row in self._rows(State.LEASED, host):
                if row.lease == self._run_id:
                    row.state, row.lease = State.QUEUED, None

    async def crawl_done(self, host_budget: int | None, max_pages: int | None) -> bool:
        await self._turn()
        totals = self._totals().values()
        if max_pages is not None and sum(c.fetched for c in totals) >= max_pages:
            return True
        return all(
            c.pending == 0 or (host_budget is not None and c.fetched >= host_budget) for c in totals
        )

    async def grant_pages(self, want: int, max_pages: int) -> int:
        await self._turn()
        fetched = sum(1 for r in self._db.rows.values() if r.fetched)
        return max(0, min(want, max_pages - fetched))

    # -- Commits -------------------------------------------------------------------------------

    async def commit(
        self,
        outcomes: Sequence[Outcome],
        hosts: Sequence[HostState] = (),
        *,
        state: str | None = None,
        counters: Mapping[str, int] | None = None,
        marks: Mapping[str, str] | None = None,
    ) -> list[Outcome]:
        total = commit_counters(outcomes, counters)
        if not outcomes and not hosts and state is None and not total and not marks:
            return []
        await self._turn()
        db = self._db
        now = time.time()
        if state is not None:
            db.marks[STATE_MARK] = state
        db.marks.update(marks or {})
        for host_state in hosts:
            db.hosts[host_state.host] = host_state
        for outcome in outcomes:
            db.sessions.update(outcome.jars or {})
        committed = [
            outcome if outcome.final_url is None else self._claim_final(outcome, now)
            for outcome in outcomes
        ]
        replaced = {o.request.id for o in committed if o.revisit in REPLACING}
        if replaced:  # a revisit found the page changed (or gone): its old items go
            db.items = {i: item for i, item in db.items.items() if item[0] not in replaced}
            for row_id in replaced:
                db.fingerprints.pop(row_id, None)
        for outcome in committed:
            if outcome.fingerprint is not None:
                db.fingerprints[outcome.request.id] = outcome.fingerprint
            for file in outcome.files or ():
                db.files[file.url] = file
        for outcome in committed:
            if outcome.links:
                self._insert(outcome.links)
        for outcome in committed:
            self._unchanged_by_sitemap(outcome, now)
        for outcome in committed:
            for item in outcome.items:
                db.items[db.next_item] = (outcome.request.id, item)
                db.next_item += 1
        add_counters(db.counters, commit_counters(committed, counters))  # with the sitemaps
        for o in committed:
            row = db.rows[o.request.id]
            row.state, row.attempts, row.not_before = o.state, o.attempts, o.not_before
            row.status, row.error, row.message, row.updated = o.status, o.error, o.message, now
            row.latency, row.size, row.lease = o.latency, o.size, None
            row.etag = o.etag if o.etag is not None else row.etag
            row.last_modified = (
                o.last_modified if o.last_modified is not None else row.last_modified
            )
            row.revisit = revisit_mark(o)
        return committed

    async def taken(self, identities: Sequence[str]) -> set[str]:
        await self._turn()
        return {
            identity
            for identity in identities
            if (i := self._db.identities.get(identity)) is not None
            and self._db.rows[i].state > State.QUEUED
        }

    # -- Kept ----------------------------------------------------------------------------------

    async def jars(self) -> dict[str, str]:
        await self._turn()
        return dict(self._db.sessions)

    async def robots_get(self, origin: str) -> tuple[float, str | None] | None:
        await self._turn()
        return self._db.robots.get(origin)

    async def robots_put(self, origin: str, fetched_at: float, body: str | None) -> None:
        await self._turn()
        self._db.robots[origin] = (fetched_at, body)

    async def files_known(self, urls: Sequence[str]) -> dict[str, FileRecord]:
        await self._turn()
        files = self._db.files
        return {url: files[url] for url in urls if url in files}

    async def fingerprints_since(
        self, cursor: str | None, limit: int
    ) -> tuple[list[tuple[str, bytes, bytes | None]], str | None]:
        await self._turn()  # (one process, one writer: request order is a complete bookmark)
        last = int(cursor or 0)
        rows = [
            (row_id, fp)
            for row_id, fp in sorted(self._db.fingerprints.items())
            if row_id > last and fp.duplicate_of is None
        ][:limit]
        if not rows:
            return [], cursor
        return [(f.url, f.body_hash, f.signature) for _, f in rows], str(rows[-1][0])

    # -- Marks and ItemFeed ----------------------------------------------------------------------

    async def claim(self, key: str, wait: float = 0.0) -> bool:
        return True  # one process: the sinks are its own

    async def get_mark(self, key: str) -> str | None:
        await self._turn()
        return self._db.marks.get(key)

    async def move_mark(self, key: str, old: str | None, new: str) -> bool:
        await self._turn()
        if self._db.marks.get(key) != old:
            return False
        self._db.marks[key] = new
        return True

    async def items_since(
        self, cursor: str | None, limit: int
    ) -> tuple[list[tuple[int, str]], str | None]:
        await self._turn()
        last = int(cursor) if cursor else 0
        rows = [(i, data) for i, (_, data) in self._db.items.items() if i > last][:limit]
        return rows, str(rows[-1][0]) if rows else cursor

    async def items_waiting(self, cursor: str | None) -> int:
        return 0  # one writer, in id order: every committed item is given at once

    # -- Reader ----------------------------------------------------------------------------------

    async def items(self) -> AsyncIterator[str]:
        await self._turn()
        for _, data in list(self._db.items.values()):
            yield data

    async def changed_items(self) -> AsyncIterator[str]:
        await self._turn()
        rows = self._db.rows
        for row_id, data in list(self._db.items.values()):
            if rows[row_id].revisit == REVISIT_CHANGED:
                yield data

    async def duplicates(self) -> AsyncIterator[dict[str, Any]]:
        await self._turn()
        for _, fp in sorted(self._db.fingerprints.items()):
            if fp.duplicate_of is not None:
                yield duplicate_dict(fp.url, fp.duplicate_of, fp.exact)

    async def failures(
        self, host: str | None = None, error: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        await self._turn()
        for row in list(self._rows(State.FAILED, host)):
            if error is None or row.error == error:
                yield failure_dict(
                    row.url, row.error, row.status, row.attempts, row.message, row.method
                )

    async def counts(self) -> Counts:
        await self._turn()
        return _sum(self._totals().values())

    async def host_totals(self) -> dict[str, Counts]:
        await self._turn()
        return self._totals()

    async def counters(self) -> dict[str, int]:
        await self._turn()
        return dict(self._db.counters)

    async def workers(self) -> list[WorkerInfo]:
        return []

    async def summary(self) -> Summary:
        await self._turn()
        finished = [r for r in self._db.rows.values() if r.finished]
        measured: dict[str, tuple[int, float | None, float | None]] = {}
        for host in {r.host for r in finished}:
            taken = [r.latency for r in finished if r.host == host and r.latency is not None]
            measured[host] = (
                sum(r.size or 0 for r in finished if r.host == host),
                sum(taken) / len(taken) if taken else None,
                max(taken, default=None),
            )
        totals = self._totals()
        hosts = host_summaries(totals, measured, dict(self._db.hosts))
        latencies = [0] * (len(LATENCY_BOUNDS) + 1)
        for row in self._db.rows.values():
            if row.latency is not None:
                bucket = next(
                    (i for i, b in enumerate(LATENCY_BOUNDS) if row.latency < b),
                    len(LATENCY_BOUNDS),
                )
                latencies[bucket] += 1
        times = [r.updated for r in finished if r.updated is not None]
        first, last = (min(times), max(times)) if times else (None, None)
        bucket_size = bucket_seconds((last or 0) - (first or 0))
        timeline: dict[int, list[int]] = {}
        for row in finished:
            if row.updated is not None and first is not None:
                slot = timeline.setdefault(int((row.updated - first) / bucket_size), [0, 0])
                slot[row.state is State.FAILED] += 1
        errors = _grouped(r.error for r in finished if r.state is State.FAILED)
        statuses = _grouped(r.status for r in finished if r.status is not None)
        return Summary(
            counts=_sum(totals.values()),
            hosts=hosts,
            statuses=dict(sorted(statuses.items())),
            errors=dict(sorted(errors.items(), key=lambda e: (-e[1], str(e[0])))),
            depths=dict(sorted(_grouped(r.depth for r in finished).items())),
            latencies=latencies,
            timeline=[
                (first + n * bucket_size, done, failed)
                for n, (done, failed) in sorted(timeline.items())
                if first is not None
            ],
            bucket=bucket_size,
            first=first,
            last=last,
            bytes=sum(h.bytes for h in hosts),
            counters=dict(self._db.counters),
        )

    # -- helpers -----------------------------------------------------------------------------

    def _rows(self, state: State, host: str | None = None) -> Iterable[_Row]:
        return (
            r
            for r in self._db.rows.values()
            if r.state is state and (host is None or r.host == host)
        )

    def _totals(self) -> dict[str, Counts]:
        """Rows per state, items and pages fetched, per host with any rows."""
        totals: dict[str, list[int]] = {}
        for row in self._db.rows.values():
            counts = totals.setdefault(row.host, [0] * 6)
            counts[row.state] += 1
            counts[5] += row.fetched
        for row_id, _ in self._db.items.values():
            totals[self._db.rows[row_id].host][4] += 1
        return {host: Counts(*counts) for host, counts in totals.items()}

    def _insert(self, requests: Iterable[NewRequest]) -> None:
        """Queue `requests` (failed at once: those with an error), unless already known."""
        db = self._db
        for r in requests:
            identity = r.key or r.url
            if identity in db.identities:
                continue
            row_id = db.next_row
            db.next_row += 1
            db.identities[identity] = row_id
            db.rows[row_id] = _Row(
                row_id,
                r.url,
                r.host,
                r.callback,
                r.priority,
                r.depth,
                r.meta,
                r.any_content_type,
                State.QUEUED if r.error is None else State.FAILED,
                error=r.error,
                message=r.message,
                key=r.key,
                method=r.method,
                body=r.body,
                errback=r.errback,
                spec=r.spec,
            )

    def _claim_final(self, outcome: Outcome, now: float) -> Outcome:
        """Mark a redirect's final URL visited. If another row already holds it (leased, done
        or failed), the outcome keeps no items or links; a merely queued row is marked done."""
        assert outcome.final_url is not None
        url, host = outcome.final_url
        key = outcome.final_key
        row_id = self._db.identities.get(key or url)
        if row_id is None:
            self._insert([NewRequest(url, host, outcome.request.callback, key=key)])
            row = self._db.rows[self._db.identities[key or url]]
            row.state, row.status, row.updated = State.DONE, outcome.status, now
            return outcome
        row = self._db.rows[row_id]
        if row.state is State.QUEUED:
            row.state, row.status, row.updated, row.message = (
                State.DONE,
                outcome.status,
                now,
                REDIRECTED,
            )
            return outcome
        return crawled_on_its_own(outcome, url)

    def _unchanged_by_sitemap(self, outcome: Outcome, now: float) -> None:
        """Mark done, as unchanged, the queued revisits a sitemap (this outcome's page) says
        have not changed (see shared.unchanged_by_sitemap)."""
        rows = [self._db.rows[i] for i in self._ids(sitemap_dated(outcome.links))]
        fetched = {
            r.key or r.url: r.updated
            for r in rows
            if r.state is State.QUEUED and r.revisit == REVISIT_QUEUED
        }
        unchanged = self._ids(unchanged_by_sitemap(outcome.links, fetched))
        for row_id in set(unchanged):
            row = self._db.rows[row_id]
            row.state, row.revisit, row.updated = State.DONE, 0, now
            row.message = UNCHANGED_BY_SITEMAP
        count_unchanged(outcome, len(set(unchanged)))

    def _ids(self, identities: Iterable[str]) -> list[int]:
        """The rows of these identities (those known)."""
        return [
            i for identity in identities if (i := self._db.identities.get(identity)) is not None
        ]


def _sum(totals: Iterable[Counts]) -> Counts:
    rows = [dataclasses.astuple(c) for c in totals]
    return Counts(*(sum(column) for column in zip(*rows, strict=True))) if rows else Counts()


def _grouped(values: Iterable[Any]) -> dict[Any, int]:
    """How many of each value."""
    counted: dict[Any, int] = {}
    for value in values:
        counted[value] = counted.get(value, 0) + 1
    return counted
