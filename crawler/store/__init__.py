"""The crawl's durable state: frontier rows, visited marks, failures and items.

The crawl talks to the `Store` protocol only (cut by its consumers: `Queue`, `HostLeases`,
`Commits`, `Kept`, `Marks`, `ItemFeed`, `Reader`): `sqlite.SQLiteStore` (the default, one process, a
file) and `postgres.PostgresStore` (many processes on many machines) implement it, and
`tests/test_store_contract.py` holds both to it. Every URL the crawl discovers is one row in
one of four states:

    QUEUED ──lease──► LEASED ──commit──► DONE | FAILED
       ▲                 │
       └──commit(retry)──┤   (a retry is re-queued with a not-before time)
       └──release / reclaim after a crash

A page's outcome (its items, the links it found, its final state) is committed in one
transaction together with the other outcomes of its batch: after a crash it is all there or
not at all, so an item is never stored without its page's mark, nor twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..errors import ConfigError
from ..records import (
    LATENCY_BOUNDS,
    STATE_MARK,
    Counts,
    FileRecord,
    HostLease,
    HostState,
    HostSummary,
    NewRequest,
    Outcome,
    State,
    StoredRequest,
    Summary,
    WorkerInfo,
)
from .sqlite import SCHEMA_VERSION, SQLiteStore, store_in_use

__all__ = [
    "LATENCY_BOUNDS",
    "SCHEMA_VERSION",
    "STATE_MARK",
    "Commits",
    "Counts",
    "HostLease",
    "HostLeases",
    "HostState",
    "HostSummary",
    "ItemFeed",
    "Kept",
    "Marks",
    "NewRequest",
    "Outcome",
    "Queue",
    "ReadableStore",
    "Reader",
    "SQLiteStore",
    "State",
    "Store",
    "StoredRequest",
    "Summary",
    "WorkerInfo",
    "is_dsn",
    "open_readonly",
    "open_store",
    "store_in_use",
]


class Queue(Protocol):
    """The queue of URLs (the frontier, and the engine as a run starts)."""

    async def add(self, requests: Sequence[NewRequest]) -> None:
        """Queue requests; those whose URL is already known (in any state) are ignored."""

    async def lease(self, host: str, limit: int, now: float) -> list[StoredRequest]:
        """Lease up to `limit` queued rows of `host` due at `now`, highest priority first,
        then oldest first. Fewer than `limit` (maybe none) when the host has no more due."""

    async def next_due(self, host: str) -> float | None:
        """The earliest not-before time of `host`'s queued rows, or None when it has none."""

    async def release(self, ids: Sequence[int] | None = None) -> int:
        """Put this run's leased rows (or just the rows `ids`) back in the queue; returns how
        many."""

    async def fail_host(self, host: str, leased: Sequence[int], *, error: str, message: str) -> int:
        """Mark as failed (never fetched) the queued rows of `host` and the leased rows `leased`
        (buffered, not in flight); returns how many."""

    async def requeue_stale(self, before: float) -> int:
        """Queue again, as revisits, the pages done before `before` (epoch seconds), but a
        redirect's final URL; returns how many. A revisit is fetched conditionally and its
        outcome keeps, replaces or removes the page's items (see Outcome.revisit)."""

    async def requeue_failed(self, host: str | None = None, error: str | None = None) -> int:
        """Put failed rows (of `host`, of error kind `error`) back in the queue with no
        attempts used, and forget the politeness state of their hosts; returns how many."""

    async def callbacks_pending(self, known: Callable[[str], bool]) -> set[str]:
        """Callback and errback names of the rows still queued or leased, except those
        `known` accepts (only the others are looked up: that can take a scan of the queue)."""


class HostLeases(Protocol):
    """Which process serves which host (crawl/leases.py): a store is `shared` when other processes
    may crawl from it at the same time. Then a process fetches only from the hosts it holds a
    lease on (`acquire_hosts`, kept alive by `heartbeat`), and `commit` refuses the outcomes of a
    host whose lease went to another process. A store of one process grants every host at once,
    for good."""

    shared: bool
    #: Seconds a host lease lasts without a heartbeat (a shared store).
    lease_ttl: float

    async def acquire_hosts(self, limit: int, host_budget: int | None) -> list[HostLease]:
        """Lease up to `limit` hosts with queued rows that no live process holds (and whose
        pages fetched are under `host_budget`). Rows another holder had leased are queued
        again. A store of one process returns every host with queued rows, whatever `limit`."""

    async def host_states(self, host: str | None = None) -> list[HostState]:
        """Every host state kept by `commit` (or `host`'s, if it has one)."""

    async def heartbeat(
        self, held: Sequence[tuple[str, int]], pages: int, rate: float, hungry: bool
    ) -> tuple[set[str], int | None]:
        """Renew the leases `held` (host, fence) and this process's record (pages done in
        this run, pages per second, whether it could serve more hosts). Returns the hosts
        still held (the others were lost) and how many hosts this process should hold at
        most, so that hungry processes get some (None: no limit)."""

    async def release_hosts(self, hosts: Sequence[tuple[str, int, float]]) -> None:
        """Give up the leases (host, fence, seconds before its next request may start) of
        hosts with nothing in flight; their leased rows are queued again."""

    async def crawl_done(self, host_budget: int | None, max_pages: int | None) -> bool:
        """Whether no host has rows queued or leased (but hosts whose pages fetched reached
        `host_budget`), or the crawl fetched `max_pages`: the crawl is over for every process."""

    async def grant_pages(self, want: int, max_pages: int) -> int:
        """Up to `want` more pages this process may fetch under the crawl's `max_pages` (what
        the crawl fetched, and what live processes were granted and not fetched yet, count)."""


class Commits(Protocol):
    """Where pages' outcomes land (the writer)."""

    async def commit(
        self,
        outcomes: Sequence[Outcome],
        hosts: Sequence[HostState] = (),
        *,
        state: str | None = None,
        counters: Mapping[str, int] | None = None,
        marks: Mapping[str, str] | None = None,
    ) -> list[Outcome]:
        """Commit outcomes of leased rows (with the cookie jars they changed, and their
        counters), the host states they changed, the spider's `state` (JSON text, kept as the
        bookmark STATE_MARK), `counters` bumped outside any page and bookmarks `marks` (how far
        a file written with the outcomes got), in one transaction: all of them or none.
        Returns the outcomes as committed: a redirect to a URL already leased, done or failed
        keeps no items or links (that page is, or was, crawled under its own URL); a lost
        outcome keeps nothing, its counters included."""

    async def taken(self, identities: Sequence[str]) -> set[str]:
        """Which of these request identities (canonical URL, or `key`) are leased, done or
        failed: a redirect to one of them keeps no items (see `commit`)."""


class Kept(Protocol):
    """What a crawl keeps between runs besides its rows: cookie jars and robots.txt."""

    async def jars(self) -> dict[str, str]:
        """Every cookie jar kept by `commit`, by session name (their text)."""

    async def robots_get(self, origin: str) -> tuple[float, str | None] | None:
        """The robots.txt kept for `origin`: (fetched_at, text; None means allow all)."""

    async def robots_put(self, origin: str, fetched_at: float, body: str | None) -> None:
        """Keep `origin`'s robots.txt (None: there is none, everything is allowed)."""

    async def files_known(self, urls: Sequence[str]) -> dict[str, FileRecord]:
        """The files `commit` kept (Outcome.files) of these URLs: stored whole already."""

    async def fingerprints_since(
        self, cursor: str | None, limit: int
    ) -> tuple[list[tuple[str, bytes, bytes | None]], str | None]:
        """Up to `limit` fingerprints `commit` kept (Outcome.fingerprint) of pages that
        duplicate none, as (URL, body hash, signature), after the bookmark `cursor` (None: from
        the first), and the bookmark after them: what a crawl's index of pages seen is built
        from as it starts and, on a shared store, brought up to date with the pages other
        processes commit (none is ever left out of a later call). A revisit's outcome replaces
        its page's fingerprint (one that found the page gone removes it)."""


class Marks(Protocol):
    """Bookmarks, and who feeds a sink (crawl/sinks.py)."""

    async def claim(self, key: str, wait: float = 0.0) -> bool:
        """Whether this process may feed the sink `key`: on a shared store one process at a
        time does (until it closes the store, or dies), so that two never write one file.
        `wait`: seconds to wait for the process feeding it to let go."""

    async def get_mark(self, key: str) -> str | None:
        """A bookmark kept in the store (e.g. how far an export file got)."""

    async def move_mark(self, key: str, old: str | None, new: str) -> bool:
        """Replace the bookmark `key` if it still reads `old` (None: there is none yet), in a
        transaction of its own; whether it did (no: another process moved it)."""


class ItemFeed(Protocol):
    """Items in commit order, for sinks fed as the crawl goes (crawl/sinks.py)."""

    async def items_since(
        self, cursor: str | None, limit: int
    ) -> tuple[list[tuple[int, str]], str | None]:
        """Up to `limit` (id, JSON text) items committed after the bookmark `cursor` (None:
        from the first), in commit order, and the bookmark after them. No item committed
        after `cursor` is ever left out of a later call (what sinks rely on)."""

    async def items_waiting(self, cursor: str | None) -> int:
        """How many items committed after the bookmark `cursor` `items_since` does not give
        yet: on PostgreSQL, those of transactions younger than the oldest one still running
        on the server (it gives them once that one ends); 0 when every item is given."""


class Reader(Protocol):
    """What `stats`, `export`, `failures` and `report` read, and the run's end."""

    #: Where the store is, for messages (a path, or a DSN without its password).
    location: str

    def items(self) -> AsyncIterator[str]:
        """Every stored item as JSON text, in the order they were committed."""

    def changed_items(self) -> AsyncIterator[str]:
        """The items of the pages the last revisit found changed (see requeue_stale)."""

    def failures(
        self, host: str | None = None, error: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Failed rows (of `host`, of error kind `error`), oldest first (as ReadableStore)."""

    def duplicates(self) -> AsyncIterator[dict[str, Any]]:
        """The pages found duplicating one crawled before (records.duplicate_dict), in the
        order their requests were queued."""

    async def counts(self) -> Counts:
        """Rows per state and items stored."""

    async def host_totals(self) -> dict[str, Counts]:
        """Rows per state and items stored, per host (kept as the crawl goes: cheap)."""

    async def counters(self) -> dict[str, int]:
        """The spider's counters and drop reasons (see stats.py), summed."""

    async def workers(self) -> list[WorkerInfo]:
        """The processes of the crawl (none for a store of one process)."""

    async def summary(self) -> Summary:
        """The crawl's summary (reads every row: seconds for millions)."""


class Store(Queue, HostLeases, Commits, Kept, Marks, ItemFeed, Reader, Protocol):
    """What a crawl needs from its store: every part above, safe to call from one event loop.
    Each consumer types its store as the part it uses."""

    async def close(self) -> None:
        """Release the store (its connection and its lock)."""


class ReadableStore(Reader, Protocol):
    """A store opened to read beside a running crawl."""

    @property
    def outdated(self) -> bool:
        """Written by an older crawler: resuming the crawl brings it up to date."""

    async def in_use(self) -> bool: ...

    async def close(self) -> None:
        """Release the store (its connection and its lock)."""


def is_dsn(location: str | Path) -> bool:
    """Whether `location` names a PostgreSQL database rather than a SQLite file."""
    return str(location).startswith(("postgresql://", "postgres://"))


async def open_store(
    location: str | Path, spider_name: str, *, fresh: bool = False, lease_ttl: float = 10.0
) -> Store:
    """The one place that picks the store backend: a PostgreSQL DSN or a SQLite file path."""
    if is_dsn(location):
        from .postgres import PostgresStore

        return await PostgresStore.open(
            str(location), spider_name, fresh=fresh, lease_ttl=lease_ttl
        )
    return await SQLiteStore.open(location, spider_name, fresh=fresh)


async def open_readonly(location: str | Path, spider_name: str | None = None) -> ReadableStore:
    """A store to read beside a running crawl. A PostgreSQL database holds a crawl per spider:
    `spider_name` says which (required there)."""
    if is_dsn(location):
        if not spider_name:
            raise ConfigError("a PostgreSQL store holds one crawl per spider: pass --spider NAME")
        from .postgres import PostgresStore

        return await PostgresStore.open_readonly(str(location), spider_name)
    return await SQLiteStore.open_readonly(location)
