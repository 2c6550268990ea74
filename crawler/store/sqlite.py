"""The Store on one SQLite file: the default, for a crawl of one process (see store/__init__)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import aiosqlite

from ..errors import ConfigError, StoreError
from ..records import (
    NEVER_SENT,
    NEW_REQUEST_COLUMNS,
    REVISIT_QUEUED,
    STATE_MARK,
    Counts,
    FileRecord,
    HostLease,
    HostState,
    NewRequest,
    Outcome,
    StoredRequest,
    Summary,
    WorkerInfo,
    revisit_mark,
)
from . import sql
from .shared import REDIRECTED, REPLACING, commit_counters, crawled_on_its_own

log = logging.getLogger(__name__)

_SQL = sql.SQLITE_SQL

SCHEMA_VERSION = 12


#: The requests table. A request's identity is COALESCE(key, url): its canonical URL for a
#: plain GET (key NULL), else method, URL, a digest of the body and the session (see
#: stored.identity).
_REQUESTS = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL,
    host TEXT NOT NULL,
    callback TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    depth INTEGER NOT NULL DEFAULT 0,
    meta TEXT,
    any_content_type INTEGER NOT NULL DEFAULT 0,
    state INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease TEXT,
    status INTEGER,
    error TEXT,
    message TEXT,
    updated REAL,
    latency REAL,
    size INTEGER,
    key TEXT,
    method TEXT,
    body BLOB,
    errback TEXT,
    spec TEXT,
    etag TEXT,
    last_modified TEXT,
    revisit INTEGER NOT NULL DEFAULT 0
)"""
#: The table as schema 7 made it (migration 6 rebuilds it so; 8 adds the revisit columns).
_REQUESTS_V7 = _REQUESTS.replace(
    ",\n    etag TEXT,\n    last_modified TEXT,\n    revisit INTEGER NOT NULL DEFAULT 0", ""
)
_REQUEST_INDEXES = [
    "CREATE UNIQUE INDEX IF NOT EXISTS requests_identity ON requests (COALESCE(key, url))",
    "CREATE INDEX IF NOT EXISTS requests_queued ON requests (host, priority DESC, id)"
    " WHERE state = 0",
    "CREATE INDEX IF NOT EXISTS requests_leased ON requests (lease) WHERE state = 1",
]

#: Each page's fingerprint (settings.duplicates), by its row.
_FINGERPRINTS = (
    "CREATE TABLE IF NOT EXISTS fingerprints (request_id INTEGER PRIMARY KEY, url TEXT NOT NULL,"
    " body_hash BLOB NOT NULL, signature BLOB, duplicate_of TEXT,"
    " exact INTEGER NOT NULL DEFAULT 0)"
)

#: Files stored whole (settings.files_store), by URL.
_FILES = (
    "CREATE TABLE IF NOT EXISTS files (url TEXT PRIMARY KEY, path TEXT NOT NULL,"
    " checksum TEXT NOT NULL, size INTEGER NOT NULL, content_type TEXT) WITHOUT ROWID"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    request_id INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS robots (
    origin TEXT PRIMARY KEY,
    fetched_at REAL NOT NULL,
    body TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hosts (
    host TEXT PRIMARY KEY,
    not_before REAL NOT NULL,
    failures INTEGER NOT NULL,
    opens INTEGER NOT NULL,
    open_until REAL NOT NULL,
    silent_since REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (name TEXT PRIMARY KEY, cookies TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""

#: Migrations from each older schema version to the next; each runs in one transaction.
_MIGRATIONS = {
    1: [  # 2: robots.txt files are kept in the store
        "CREATE TABLE IF NOT EXISTS robots"
        " (origin TEXT PRIMARY KEY, fetched_at REAL NOT NULL, body TEXT) WITHOUT ROWID",
    ],
    2: [  # 3: per-host politeness state (back-off deadline, circuit breaker) is kept
        "CREATE TABLE IF NOT EXISTS hosts (host TEXT PRIMARY KEY, not_before REAL NOT NULL,"
        " failures INTEGER NOT NULL, opens INTEGER NOT NULL, open_until REAL NOT NULL)"
        " WITHOUT ROWID",
    ],
}

#: The running totals as schema 4 kept them (migration 5 rewrites three of the triggers).
_COUNTERS_V4 = [
    "CREATE TABLE IF NOT EXISTS host_counts (host TEXT PRIMARY KEY,"
    " queued INTEGER NOT NULL DEFAULT 0, leased INTEGER NOT NULL DEFAULT 0,"
    " done INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,"
    " items INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS callbacks (name TEXT PRIMARY KEY) WITHOUT ROWID",
    """CREATE TRIGGER IF NOT EXISTS count_inserted AFTER INSERT ON requests BEGIN
        INSERT INTO host_counts (host, queued, leased, done, failed)
        VALUES (NEW.host, NEW.state = 0, NEW.state = 1, NEW.state = 2, NEW.state = 3)
        ON CONFLICT (host) DO UPDATE SET queued = queued + excluded.queued,
            leased = leased + excluded.leased, done = done + excluded.done,
            failed = failed + excluded.failed;
        INSERT OR IGNORE INTO callbacks (name) VALUES (NEW.callback);
    END""",
    """CREATE TRIGGER IF NOT EXISTS count_moved AFTER UPDATE OF state ON requests
    WHEN OLD.state <> NEW.state BEGIN
        UPDATE host_counts SET queued = queued + (NEW.state = 0) - (OLD.state = 0),
            leased = leased + (NEW.state = 1) - (OLD.state = 1),
            done = done + (NEW.state = 2) - (OLD.state = 2),
            failed = failed + (NEW.state = 3) - (OLD.state = 3)
        WHERE host = NEW.host;
    END""",
    """CREATE TRIGGER IF NOT EXISTS count_deleted AFTER DELETE ON requests BEGIN
        UPDATE host_counts SET queued = queued - (OLD.state = 0),
            leased = leased - (OLD.state = 1), done = done - (OLD.state = 2),
            failed = failed - (OLD.state = 3)
        WHERE host = OLD.host;
    END""",
    """CREATE TRIGGER IF NOT EXISTS count_item AFTER INSERT ON items BEGIN
        UPDATE host_counts SET items = items + 1
        WHERE host = (SELECT host FROM requests WHERE id = NEW.request_id);
    END""",
]

#: Running totals kept by triggers in the transaction that changes a row, so that a store of
#: millions of rows answers "how many queued, fetched, which hosts have work" without scanning
#: them. A row counts as fetched when it is done or failed with a latency (see Outcome.fetched).
_COUNT_TRIGGERS = [
    """CREATE TRIGGER IF NOT EXISTS count_inserted AFTER INSERT ON requests BEGIN
        INSERT INTO host_counts (host, queued, leased, done, failed, fetched)
        VALUES (NEW.host, NEW.state = 0, NEW.state = 1, NEW.state = 2, NEW.state = 3,
            NEW.state >= 2 AND NEW.latency IS NOT NULL)
        ON CONFLICT (host) DO UPDATE SET queued = queued + excluded.queued,
            leased = leased + excluded.leased, done = done + excluded.done,
            failed = failed + excluded.failed, fetched = fetched + excluded.fetched;
        INSERT OR IGNORE INTO callbacks (name) VALUES (NEW.callback);
    END""",
    """CREATE TRIGGER IF NOT EXISTS count_moved AFTER UPDATE OF state ON requests
    WHEN OLD.state <> NEW.state BEGIN
        UPDATE host_counts SET queued = queued + (NEW.state = 0) - (OLD.state = 0),
            leased = leased + (NEW.state = 1) - (OLD.state = 1),
            done = done + (NEW.state = 2) - (OLD.state = 2),
            failed = failed + (NEW.state = 3) - (OLD.state = 3),
            fetched = fetched + (NEW.state >= 2 AND NEW.latency IS NOT NULL)
                - (OLD.state >= 2 AND OLD.latency IS NOT NULL)
        WHERE host = NEW.host;
    END""",
    """CREATE TRIGGER IF NOT EXISTS count_deleted AFTER DELETE ON requests BEGIN
        UPDATE host_counts SET queued = queued - (OLD.state = 0),
            leased = leased - (OLD.state = 1), done = done - (OLD.state = 2),
            failed = failed - (OLD.state = 3),
            fetched = fetched - (OLD.state >= 2 AND OLD.latency IS NOT NULL)
        WHERE host = OLD.host;
    END""",
]
#: Errback names join the callbacks in use (schema 7).
_ERRBACK_TRIGGER = """CREATE TRIGGER IF NOT EXISTS count_errback AFTER INSERT ON requests
    WHEN NEW.errback IS NOT NULL BEGIN
        INSERT OR IGNORE INTO callbacks (name) VALUES (NEW.errback);
    END"""
#: Items removed (a revisit replaced or removed a page's) leave the host's count too.
_ITEM_DELETED = """CREATE TRIGGER IF NOT EXISTS count_item_deleted AFTER DELETE ON items BEGIN
        UPDATE host_counts SET items = items - 1
        WHERE host = (SELECT host FROM requests WHERE id = OLD.request_id);
    END"""
_COUNTERS = [
    "CREATE TABLE IF NOT EXISTS host_counts (host TEXT PRIMARY KEY,"
    " queued INTEGER NOT NULL DEFAULT 0, leased INTEGER NOT NULL DEFAULT 0,"
    " done INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,"
    " items INTEGER NOT NULL DEFAULT 0, fetched INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID",
    _COUNTERS_V4[1],  # callbacks
    *_COUNT_TRIGGERS,
    _COUNTERS_V4[-1],  # count_item
    _ERRBACK_TRIGGER,
    _ITEM_DELETED,
]
_MIGRATIONS[9] = [  # 10: host health: when a host's failures since its last success began
    "ALTER TABLE hosts ADD COLUMN silent_since REAL",
]
_MIGRATIONS[10] = [_FINGERPRINTS]  # 11: pages' fingerprints, for duplicates
_MIGRATIONS[11] = [_FILES]  # 12: files stored whole
#: Errors of pages no request went out for (for stores from before `fetched` was counted).
_NEVER_SENT = sorted(NEVER_SENT)

_MIGRATIONS[3] = [  # 4: per-host totals and the callbacks in use, kept by triggers
    *_COUNTERS_V4,
    "INSERT INTO host_counts (host, queued, leased, done, failed)"
    " SELECT host, SUM(state = 0), SUM(state = 1), SUM(state = 2), SUM(state = 3)"
    " FROM requests GROUP BY host",
    "UPDATE host_counts SET items = (SELECT COUNT(*) FROM items JOIN requests"
    " ON requests.id = items.request_id WHERE requests.host = host_counts.host)",
    "INSERT INTO callbacks (name) SELECT DISTINCT callback FROM requests",
]
_MIGRATIONS[4] = [  # 5: each fetch's duration and size, for stats and reports
    "ALTER TABLE requests ADD COLUMN latency REAL",
    "ALTER TABLE requests ADD COLUMN size INTEGER",
]
_MIGRATIONS[5] = [  # 6: pages fetched per host (what page budgets count), kept by triggers
    "ALTER TABLE host_counts ADD COLUMN fetched INTEGER NOT NULL DEFAULT 0",
    "DROP TRIGGER count_inserted",
    "DROP TRIGGER count_moved",
    "DROP TRIGGER count_deleted",
    *_COUNT_TRIGGERS,
    # earlier stores kept no sure sign of a request going out: every finished page counts
    # but those failed before any request (a redirect's final URL still counts, as it did)
    "UPDATE host_counts SET fetched = counted.n FROM (SELECT host, COUNT(*) AS n FROM requests"
    " WHERE state >= 2 AND COALESCE(error, '') NOT IN"
    f" ({', '.join(repr(str(kind)) for kind in _NEVER_SENT)}) GROUP BY host) AS counted"
    " WHERE counted.host = host_counts.host",
]
_MIGRATIONS[6] = [  # 7: requests beyond GET (identity key, method, body...), cookie jars
    # the 12-step table rebuild: url is no longer unique (a GET and a POST may share it)
    _REQUESTS_V7.replace("requests (", "requests_v7 (", 1),
    "INSERT INTO requests_v7 (id, url, host, callback, priority, depth, meta, any_content_type,"
    " state, not_before, attempts, lease, status, error, message, updated, latency, size)"
    " SELECT id, url, host, callback, priority, depth, meta, any_content_type, state,"
    " not_before, attempts, lease, status, error, message, updated, latency, size FROM requests",
    "DROP TRIGGER count_item",  # it names requests, which is briefly missing
    "DROP TABLE requests",  # its own triggers and indexes go with it
    "ALTER TABLE requests_v7 RENAME TO requests",
    *_REQUEST_INDEXES,
    *_COUNT_TRIGGERS,
    _COUNTERS_V4[-1],  # count_item
    _ERRBACK_TRIGGER,
    "CREATE TABLE IF NOT EXISTS sessions (name TEXT PRIMARY KEY, cookies TEXT NOT NULL)"
    " WITHOUT ROWID",
]
_MIGRATIONS[7] = [  # 8: the spider's counters and drop reasons (its state is a bookmark)
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"
    " WITHOUT ROWID",
]
_MIGRATIONS[8] = [  # 9: revisits (validators kept, rows queued again, items replaced)
    "ALTER TABLE requests ADD COLUMN etag TEXT",
    "ALTER TABLE requests ADD COLUMN last_modified TEXT",
    "ALTER TABLE requests ADD COLUMN revisit INTEGER NOT NULL DEFAULT 0",
    _ITEM_DELETED,
]


_COLUMNS = (
    "id, url, host, callback, priority, depth, meta, any_content_type, attempts,"
    " method, body, errback, spec, etag, last_modified, revisit"
)


class SQLiteStore:
    """The Store on one SQLite file (WAL mode, synchronous=NORMAL).

    Durability: a crash or `kill -9` of the crawler loses nothing committed. A power loss can
    lose the last few committed batches (never half of one): those pages are simply fetched
    again. A lock file next to the store keeps a second crawl off a store in use.
    """

    #: One process at a time (a lock file): every host is this process's, for good.
    shared = False
    lease_ttl = float("inf")

    def __init__(
        self, db: aiosqlite.Connection, path: Path, run_id: str, lock: IO[str] | None
    ) -> None:
        self._db = db
        self.path = path
        self.location = str(path)
        self.run_id = run_id
        self._lock_file = lock
        self._tx_lock = asyncio.Lock()
        self.schema_version = SCHEMA_VERSION  # a read-only store may be older (not migrated)

    # -- opening and closing ---------------------------------------------------------------

    @classmethod
    async def open(cls, path: str | Path, spider_name: str, *, fresh: bool = False) -> SQLiteStore:
        """Open (creating it when missing) the store of `spider_name` at `path`.

        Leases left by a crawl that died are reclaimed. Errors: the store is in use by another
        crawl, belongs to another spider or schema version, or is not a store (ConfigError or
        StoreError with a one-line message). `fresh` deletes what the store held first.
        """
        file = Path(path)
        lock = _acquire_lock(file)
        try:
            if fresh:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(f"{file}{suffix}")
            db = await aiosqlite.connect(file, isolation_level=None)
        except BaseException:
            lock.close()
            raise
        store = cls(db, file, run_id=f"{os.getpid()}-{time.time_ns()}", lock=lock)
        try:
            await store._prepare(spider_name)
        except BaseException:
            await store.close()
            raise
        return store

    @classmethod
    async def open_readonly(cls, path: str | Path) -> SQLiteStore:
        """Open an existing store for reading only (export, stats): no lock is taken, so it
        works beside a running crawl. Only the reading methods may be used."""
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"no store at {file}")
        db = await aiosqlite.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
        store = cls(db, file, run_id="", lock=None)
        try:
            rows = await store._fetchall("SELECT value FROM meta WHERE key = 'schema_version'")
        except StoreError:
            await store.close()
            raise StoreError(f"{file} is not a crawler store") from None
        if not rows or not rows[0][0].isdigit() or int(rows[0][0]) > SCHEMA_VERSION:
            await store.close()
            raise StoreError(f"{file} is not a crawler store of schema {SCHEMA_VERSION}")
        store.schema_version = int(rows[0][0])
        return store

    async def _prepare(self, spider_name: str) -> None:
        try:
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA synchronous=NORMAL")
            await self._db.execute("PRAGMA busy_timeout=5000")
            rows = await self._fetchall(
                "SELECT name FROM sqlite_master WHERE type='table' AND name='meta'"
            )
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a crawler store ({exc})") from None
        if rows:
            meta = dict(await self._fetchall("SELECT key, value FROM meta"))
            version, owner = meta.get("schema_version"), meta.get("spider")
            if owner == spider_name and version is not None and version.isdigit():
                version = await self._migrate(int(version))
            if version != str(SCHEMA_VERSION):
                raise StoreError(
                    f"{self.path} has store schema version {version}, this crawler uses "
                    f"{SCHEMA_VERSION}: use another --store or start over with --fresh"
                )
            if owner != spider_name:
                raise ConfigError(
                    f"{self.path} belongs to spider {owner!r}, not {spider_name!r}: "
                    "use another --store, or --fresh to start over"
                )
        else:
            async with self._transaction():
                statements = [
                    _REQUESTS,
                    *_REQUEST_INDEXES,
                    *_SCHEMA.split(";"),
                    *_COUNTERS,
                    _FINGERPRINTS,
                    _FILES,
                ]
                for statement in statements:
                    if statement.strip():
                        await self._db.execute(statement)
                await self._db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("schema_version", str(SCHEMA_VERSION)), ("spider", spider_name)],
                )
        async with self._transaction():
            await self._db.execute("UPDATE requests SET state = 0, lease = NULL WHERE state = 1")

    async def _migrate(self, version: int) -> str:
        """Bring an older schema up to date, one version per transaction; the version reached."""
        while version < SCHEMA_VERSION and version in _MIGRATIONS:
            async with self._transaction():
                for statement in _MIGRATIONS[version]:
                    await self._db.execute(statement)
                version += 1
                await self._db.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),)
                )
            log.info("migrated store %s to schema version %d", self.path, version)
        return str(version)

    async def close(self) -> None:
        try:
            await self._db.close()
        finally:
            if self._lock_file is not None:
                self._lock_file.close()

    async def __aenter__(self) -> SQLiteStore:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- the Store protocol ----------------------------------------------------------------

    async def add(self, requests: Sequence[NewRequest]) -> None:
        if requests:
            async with self._transaction():
                await self._insert(requests)

    async def hosts_with_work(self) -> list[str]:
        """Every host with queued rows, by name."""
        rows = await self._fetchall("SELECT host FROM host_counts WHERE queued ORDER BY host")
        return [host for (host,) in rows]

    async def acquire_hosts(self, limit: int, host_budget: int | None) -> list[HostLease]:
        fetched: dict[str, int] = {}
        if host_budget is not None:
            rows = await self._fetchall("SELECT host, fetched FROM host_counts WHERE fetched > 0")
            fetched = {host: count for host, count in rows}
        states = {state.host: state for state in await self.host_states()}
        return [
            HostLease(host, 0, states.get(host), fetched.get(host, 0))
            for host in await self.hosts_with_work()
        ]

    async def heartbeat(
        self, held: Sequence[tuple[str, int]], pages: int, rate: float, hungry: bool
    ) -> tuple[set[str], int | None]:
        return {host for host, _ in held}, None

    async def release_hosts(self, hosts: Sequence[tuple[str, int, float]]) -> None:
        async with self._transaction():
            await self._db.executemany(
                "UPDATE requests SET state = 0, lease = NULL"
                " WHERE host = ? AND state = 1 AND lease = ?",
                [(host, self.run_id) for host, _, _ in hosts],
            )

    async def crawl_done(self, host_budget: int | None, max_pages: int | None) -> bool:
        if max_pages is not None and (await self.counts()).fetched >= max_pages:
            return True
        if host_budget is None:
            return (await self.counts()).pending == 0
        return all(
            c.pending == 0 or c.fetched >= host_budget for c in (await self.host_totals()).values()
        )

    async def grant_pages(self, want: int, max_pages: int) -> int:
        return max(0, min(want, max_pages - (await self.counts()).fetched))

    async def workers(self) -> list[WorkerInfo]:
        return []

    @property
    def outdated(self) -> bool:
        """Written by an older crawler (a read-only store is not migrated)."""
        return self.schema_version < SCHEMA_VERSION

    async def in_use(self) -> bool:
        """Whether a crawl holds this store right now."""
        return store_in_use(self.path)

    async def lease(self, host: str, limit: int, now: float) -> list[StoredRequest]:
        async with self._tx_lock:  # one statement: a transaction of its own
            rows = await self._fetchall(
                f"UPDATE requests SET state = 1, lease = ? WHERE id IN ("
                f" SELECT id FROM requests WHERE state = 0 AND host = ? AND not_before <= ?"
                f" ORDER BY priority DESC, id LIMIT ?) RETURNING {_COLUMNS}",
                (self.run_id, host, now, limit),
            )
        leased = [
            StoredRequest(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                bool(r[7]),
                r[8],
                r[9],
                r[10],
                r[11],
                r[12],
                r[13],
                r[14],
                r[15] == REVISIT_QUEUED,
            )
            for r in rows
        ]
        leased.sort(key=lambda r: (-r.priority, r.id))
        return leased

    async def next_due(self, host: str) -> float | None:
        rows = await self._fetchall(_SQL.next_due, (host,))
        return rows[0][0] if rows else None

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
        now = time.time()
        jars = {name: text for o in outcomes if o.jars for name, text in o.jars.items()}
        async with self._transaction():
            if state is not None:
                await self._db.execute(_SQL.keep_mark, (f"mark:{STATE_MARK}", state))
            for key, value in (marks or {}).items():
                await self._db.execute(_SQL.keep_mark, (f"mark:{key}", value))
            if hosts:
                await self._db.executemany(
                    "INSERT OR REPLACE INTO hosts"
                    " (host, not_before, failures, opens, open_until, silent_since)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (h.host, h.not_before, h.failures, h.opens, h.open_until, h.silent_since)
                        for h in hosts
                    ],
                )
            if jars:  # the latest state of each jar the batch changed
                await self._db.executemany(_SQL.keep_jar, jars.items())
            committed = [
                outcome if outcome.final_url is None else await self._claim_final(outcome, now)
                for outcome in outcomes
            ]
            links = [link for o in committed for link in o.links]
            items = [(o.request.id, item) for o in committed for item in o.items]
            updates = [
                (
                    int(o.state),
                    o.attempts,
                    o.not_before,
                    o.status,
                    o.error,
                    o.message,
                    now,
                    o.latency,
                    o.size,
                    o.etag,
                    o.last_modified,
                    revisit_mark(o),
                    o.request.id,
                )
                for o in committed
            ]
            replaced = [(o.request.id,) for o in committed if o.revisit in REPLACING]
            if replaced:  # a revisit found the page changed (or gone): its old items go
                await self._db.executemany("DELETE FROM items WHERE request_id = ?", replaced)
            forget, keep = sql.fingerprint_rows(committed)
            if forget:
                await self._db.executemany(_SQL.forget_fingerprint, forget)
            if keep:
                await self._db.executemany(_SQL.keep_fingerprint, keep)
            files = sql.file_rows(committed)
            if files:
                await self._db.executemany(_SQL.keep_file, files)
            if links:
                await self._insert(links)
                for outcome in committed:
                    await sql.mark_unchanged_by_sitemap(self._query, sql.SQLITE, outcome, now)
            if items:
                await self._db.executemany(
                    "INSERT INTO items (request_id, data) VALUES (?, ?)", items
                )
            total = commit_counters(committed, counters)  # with the sitemaps' counts
            if total:
                await self._db.executemany(
                    "INSERT INTO counters (name, value) VALUES (?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                    sorted(total.items()),
                )
            await self._db.executemany(
                "UPDATE requests SET state = ?, attempts = ?, not_before = ?, status = ?,"
                " error = ?, message = ?, updated = ?, latency = ?, size = ?, lease = NULL,"
                " etag = COALESCE(?, etag), last_modified = COALESCE(?, last_modified),"
                " revisit = ? WHERE id = ?",
                updates,
            )
        return committed

    async def _claim_final(self, outcome: Outcome, now: float) -> Outcome:
        """Mark a redirect's final URL visited. If another row already holds it (leased, done
        or failed), the outcome keeps no items or links; a merely queued row is marked done."""
        assert outcome.final_url is not None
        url, host = outcome.final_url
        key = outcome.final_key
        cursor = await self._db.execute(
            "INSERT OR IGNORE INTO requests (url, host, callback, state, status, updated, key)"
            " VALUES (?, ?, ?, 2, ?, ?, ?)",
            (url, host, outcome.request.callback, outcome.status, now, key),
        )
        if cursor.rowcount == 0:
            cursor = await self._db.execute(
                "UPDATE requests SET state = 2, status = ?, updated = ?,"
                f" message = '{REDIRECTED}' WHERE COALESCE(key, url) = ?"
                " AND state = 0",
                (outcome.status, now, key or url),
            )
        if cursor.rowcount == 1:
            return outcome
        return crawled_on_its_own(outcome, url)

    async def release(self, ids: Sequence[int] | None = None) -> int:
        async with self._transaction():
            if ids is None:
                cursor = await self._db.execute(
                    "UPDATE requests SET state = 0, lease = NULL WHERE state = 1 AND lease = ?",
                    (self.run_id,),
                )
            else:
                cursor = await self._db.executemany(
                    "UPDATE requests SET state = 0, lease = NULL WHERE state = 1 AND id = ?",
                    [(row,) for row in ids],
                )
            return cursor.rowcount

    async def fail_host(self, host: str, leased: Sequence[int], *, error: str, message: str) -> int:
        now = time.time()
        async with self._transaction():
            cursor = await self._db.execute(
                "UPDATE requests SET state = 3, error = ?, message = ?, updated = ?,"
                " latency = NULL, size = NULL WHERE host = ? AND state = 0",
                (error, message, now, host),
            )
            failed = cursor.rowcount
            if leased:
                cursor = await self._db.executemany(
                    "UPDATE requests SET state = 3, error = ?, message = ?, updated = ?,"
                    " latency = NULL, size = NULL, lease = NULL WHERE id = ? AND state = 1",
                    [(error, message, now, row) for row in leased],
                )
                failed += cursor.rowcount
        return failed

    async def requeue_stale(self, before: float) -> int:
        async with self._transaction():
            # a new revisit: what the last one changed is no longer news
            await self._db.execute(_SQL.old_news)
            cursor = await self._db.execute(
                "UPDATE requests SET state = 0, revisit = 1, attempts = 0, not_before = 0"
                f" WHERE {sql.stale(sql.SQLITE)}",
                (before,),
            )
            return cursor.rowcount

    async def requeue_failed(self, host: str | None = None, error: str | None = None) -> int:
        async with self._transaction():
            # their hosts get a fresh start: a breaker that gave up would fail them at once
            await self._db.execute("DELETE FROM hosts WHERE ?1 IS NULL OR host = ?1", (host,))
            cursor = await self._db.execute(
                "UPDATE requests SET state = 0, attempts = 0, not_before = 0, error = NULL,"
                " message = NULL, status = NULL WHERE state = 3"
                " AND (?1 IS NULL OR host = ?1) AND (?2 IS NULL OR error = ?2)",
                (host, error),
            )
            return cursor.rowcount

    def failures(
        self, host: str | None = None, error: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        return sql.failures(self._query, sql.SQLITE, host, error)

    async def files_known(self, urls: Sequence[str]) -> dict[str, FileRecord]:
        if self.schema_version < 12:
            return {}
        return await sql.files_known(self._query, sql.SQLITE, urls)

    async def fingerprints_since(
        self, cursor: str | None, limit: int
    ) -> tuple[list[tuple[str, bytes, bytes | None]], str | None]:
        if self.schema_version < 11:  # (read-only, before a resume migrated it: none)
            return [], cursor
        # one writer: request order is a complete bookmark (this process judged its own pages)
        rows = await self._fetchall(
            "SELECT request_id, url, body_hash, signature FROM fingerprints"
            " WHERE request_id > ? AND duplicate_of IS NULL ORDER BY request_id LIMIT ?",
            (int(cursor or 0), limit),
        )
        if not rows:
            return [], cursor
        return [sql.fingerprint_row(*row[1:]) for row in rows], str(rows[-1][0])

    async def duplicates(self) -> AsyncIterator[dict[str, Any]]:
        if self.schema_version >= 11:
            async for duplicate in sql.duplicates(self._query, sql.SQLITE):
                yield duplicate

    async def jars(self) -> dict[str, str]:
        return dict(await self._fetchall(_SQL.jars))

    async def host_states(self, host: str | None = None) -> list[HostState]:
        columns = "SELECT host, not_before, failures, opens, open_until, silent_since FROM hosts"
        if host is None:
            rows = await self._fetchall(columns)
        else:
            rows = await self._fetchall(columns + " WHERE host = ?", (host,))
        return [HostState(*row) for row in rows]

    async def robots_get(self, origin: str) -> tuple[float, str | None] | None:
        """The robots.txt kept for `origin`: (fetched_at, text; None means allow all)."""
        rows = await self._fetchall(_SQL.robots_get, (origin,))
        return (rows[0][0], rows[0][1]) if rows else None

    async def robots_put(self, origin: str, fetched_at: float, body: str | None) -> None:
        """Keep `origin`'s robots.txt (None: there is none, everything is allowed)."""
        async with self._tx_lock:  # one statement: a transaction of its own, one hand-off
            await self._fetchall(_SQL.robots_put, (origin, fetched_at, body))

    async def counts(self) -> Counts:
        ((queued, leased, done, failed, items, fetched),) = await self._fetchall(
            "SELECT TOTAL(queued), TOTAL(leased), TOTAL(done), TOTAL(failed), TOTAL(items),"
            " TOTAL(fetched) FROM host_counts"
        )
        return Counts(int(queued), int(leased), int(done), int(failed), int(items), int(fetched))

    async def host_totals(self) -> dict[str, Counts]:
        rows = await self._fetchall(
            "SELECT host, queued, leased, done, failed, items, fetched FROM host_counts"
        )
        return {host: Counts(*totals) for host, *totals in rows}

    async def summary(self) -> Summary:
        return await sql.summary(
            lambda query, args: self._fetchall(query, tuple(args)),
            sql.SQLITE,
            counts=await self.counts(),
            totals=await self.host_totals(),
            politeness=await self.host_states(),
            counters=await self.counters(),
            workers=[],
        )

    async def callbacks_pending(self, known: Callable[[str], bool]) -> set[str]:
        pending = set()
        for (name,) in await self._fetchall("SELECT name FROM callbacks"):
            if not known(name) and await self._fetchall(sql.callback_in_use(sql.SQLITE), (name,)):
                pending.add(name)
        return pending

    async def items(self) -> AsyncIterator[str]:
        cursor = None
        while True:
            rows, cursor = await self.items_since(cursor, 1000)
            if not rows:
                return
            for _, data in rows:
                yield data

    def changed_items(self) -> AsyncIterator[str]:
        return sql.changed_items(self._query, sql.SQLITE)

    async def items_since(
        self, cursor: str | None, limit: int
    ) -> tuple[list[tuple[int, str]], str | None]:
        # one writer commits items in id order: the last id read is a complete bookmark
        last = int(cursor) if cursor else 0
        rows = await self._fetchall(
            "SELECT id, data FROM items WHERE id > ? ORDER BY id LIMIT ?", (last, limit)
        )
        return [(row[0], row[1]) for row in rows], str(rows[-1][0]) if rows else cursor

    async def items_waiting(self, cursor: str | None) -> int:
        return 0  # one writer, in id order: every committed item is given at once

    async def taken(self, identities: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for chunk in sql.SQLITE.chunks(identities):
            rows = await self._fetchall(_SQL.taken(len(chunk)), tuple(chunk))
            found.update(identity for (identity,) in rows)
        return found

    async def claim(self, key: str, wait: float = 0.0) -> bool:
        return True  # one process: the sinks are its own

    async def counters(self) -> dict[str, int]:
        if self.schema_version < 8:
            return {}
        return dict(await self._fetchall("SELECT name, value FROM counters"))

    async def get_mark(self, key: str) -> str | None:
        rows = await self._fetchall(_SQL.get_mark, (f"mark:{key}",))
        return str(rows[0][0]) if rows else None

    async def move_mark(self, key: str, old: str | None, new: str) -> bool:
        async with self._transaction():
            if old is None:
                cursor = await self._db.execute(_SQL.new_mark, (f"mark:{key}", new))
            else:
                cursor = await self._db.execute(_SQL.move_mark, (f"mark:{key}", old, new))
            return cursor.rowcount == 1

    # -- helpers ---------------------------------------------------------------------------

    async def _insert(self, requests: Sequence[NewRequest]) -> None:
        """Queue `requests` (failed at once: those with an error), unless already known."""
        await self._db.executemany(
            f"INSERT OR IGNORE INTO requests ({NEW_REQUEST_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [r.row() for r in requests],
        )

    async def _fetchall(self, query: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:  # (one hand-off to the store's thread, where execute + fetchall + close are three)
            return list(await self._db.execute_fetchall(query, params))  # type: ignore[arg-type]
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: {exc}") from exc

    async def _query(self, query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """A query of the SQL written for both backends (store/sql.py)."""
        return await self._fetchall(query, tuple(params))

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """One write transaction at a time on the shared connection; rolled back on any error
        (cancellation included), so it commits whole or not at all."""
        async with self._tx_lock:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                yield
                await self._db.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    await self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"store {self.path}: {exc}") from exc
                raise


def store_in_use(path: str | Path) -> bool:
    """Whether a crawl holds the store at `path` (open for writing) right now."""
    try:
        lock = open(f"{path}.lock")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return False
    with lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
        return False


def _acquire_lock(file: Path) -> IO[str]:
    """Hold an exclusive lock on `<store>.lock` for as long as the store is open. It dies with
    the process, so a killed crawl never leaves a stale lock."""
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        lock = open(f"{file}.lock", "a+")  # noqa: SIM115 - held open for the store's lifetime
    except OSError as exc:
        raise StoreError(f"cannot open store {file}: {exc.strerror}") from None
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise StoreError(f"store {file} is in use by a running crawl (pid {holder})") from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock
