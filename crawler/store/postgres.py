"""The Store on PostgreSQL: one crawl shared by many processes on many machines.

Each spider's crawl lives in a schema of its own (`crawler_<spider>`), so several spiders share
one database. Processes divide the crawl by host: a process leases a host row (`hosts.owner`,
`lease_until`, a fencing token `fence` that grows with every grant) and is then the only one
fetching from that host, so per-host concurrency, rate limit, Crawl-delay, Retry-After and the
circuit breaker, kept in one process, hold for the whole crawl. A lease lasts `lease_ttl`
seconds of the database's clock unless renewed (by every commit and a heartbeat), so the hosts of
a killed process pass to the others within that time.

Every commit first renews the leases of its hosts `WHERE fence = <the fence its pages were
leased under>` in the same transaction: the outcomes of a host that went to another process
(this one was paused or cut off past its lease) are refused, and only rows closed by that
transaction (`state = 1 -> 2|3`) get their items, so every item is stored exactly once.

No statement per page: a batch of plain outcomes is one statement, whatever its size: a call of
the schema's `commit_pages` function (created, as this crawler has it, whenever a process opens
the crawl) with array parameters (`unnest`), atomic without BEGIN and
COMMIT; the writer's commits are the crawl's critical path, and each round trip of a
transaction waited its turn on the busy event loop. A batch the function refuses (a lease
lost) or cannot take (redirects to claim, cookies, revisits, sitemap dates, new hosts) is one
transaction of about six statements. Running totals are rows per (host, process)
that only their process writes (summed on read), so there is no shared hot row.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import asyncpg

from ..errors import ConfigError, StoreError
from ..records import (
    NEW_REQUEST_COLUMNS,
    REVISIT_QUEUED,
    STATE_MARK,
    Counts,
    FileRecord,
    HostLease,
    HostState,
    NewRequest,
    Outcome,
    State,
    StoredRequest,
    Summary,
    WorkerInfo,
    revisit_mark,
)
from ..stats import add as add_counters
from . import sql
from .shared import REDIRECTED, REPLACING, commit_counters, crawled_on_its_own, safe_dsn

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Db = PoolConnectionProxy[asyncpg.Record]

log = logging.getLogger(__name__)

_SQL = sql.POSTGRES_SQL
T = TypeVar("T")
P = ParamSpec("P")

SCHEMA_VERSION = 7

#: The database's clock, in epoch seconds: leases never depend on the machines' clocks.
_NOW = "extract(epoch FROM clock_timestamp())::float8"


def _count_sql(first: int) -> str:
    """Adding to a process's running totals: its parameters, from number `first`, are the
    writer, then the hosts and their added, done, failed, items and fetched counts."""
    p = [f"${first + i}" for i in range(7)]
    return f"""INSERT INTO counts (host, writer, added, done, failed, items, fetched)
        SELECT u.host, {p[0]}, u.added, u.done, u.failed, u.items, u.fetched
        FROM unnest({p[1]}::text[], {p[2]}::bigint[], {p[3]}::bigint[], {p[4]}::bigint[],
            {p[5]}::bigint[], {p[6]}::bigint[]) u(host, added, done, failed, items, fetched)
        ON CONFLICT (host, writer) DO UPDATE SET added = counts.added + excluded.added,
            done = counts.done + excluded.done, failed = counts.failed + excluded.failed,
            items = counts.items + excluded.items, fetched = counts.fetched + excluded.fetched"""


#: What a commit closes a page with (from its outcome), and the column types.
_PAGE_COLUMNS = (
    ("id", "bigint"),
    ("state", "smallint"),
    ("attempts", "int"),
    ("not_before", "float8"),
    ("status", "int"),
    ("error", "text"),
    ("message", "text"),
    ("latency", "float8"),
    ("size", "int"),
    ("etag", "text"),
    ("last_modified", "text"),
    ("revisit", "smallint"),
)
_PAGES = ", ".join(name for name, _ in _PAGE_COLUMNS)
#: The types of NEW_REQUEST_COLUMNS, in their order.
_NEW_REQUEST_TYPES = (
    "text", "text", "text", "int", "int", "text", "bool", "smallint", "text", "text", "text",
    "text", "bytea", "text", "text",
)  # fmt: skip


_NEW_REQUEST_ARRAYS = ", ".join(f"${i + 1}::{kind}[]" for i, kind in enumerate(_NEW_REQUEST_TYPES))


def _closing(arrays: str, now: str) -> str:
    """Closing a commit's pages, from `arrays` (the unnest arguments, in _PAGE_COLUMNS'
    order) at the time `now`."""
    return f"""UPDATE requests r SET state = u.state, attempts = u.attempts,
        not_before = u.not_before, status = u.status, error = u.error,
        message = u.message, updated = {now}, latency = u.latency, size = u.size,
        lease = NULL, etag = COALESCE(u.etag, r.etag),
        last_modified = COALESCE(u.last_modified, r.last_modified),
        revisit = u.revisit
    FROM unnest({arrays}) u({_PAGES})
    WHERE r.id = u.id"""


#: Closing a commit's pages: their ids and outcomes ($1-$12, see `_close_args`), the time ($13).
_CLOSE = _closing(
    ", ".join(f"${i + 1}::{kind}[]" for i, (_, kind) in enumerate(_PAGE_COLUMNS)), "$13"
)
_COUNT = _count_sql(1)
#: Both in one statement (the totals' parameters follow the pages', from $14).
_CLOSE_AND_COUNT = f"WITH closed AS ({_CLOSE}) {_count_sql(14)}"

#: A fence renewed by a commit, with the host's state when it changed (has_state).
_FENCE_COLUMNS = (
    ("host", "text"),
    ("fence", "bigint"),
    ("has_state", "bool"),
    ("not_before", "float8"),
    ("failures", "int"),
    ("opens", "int"),
    ("open_until", "float8"),
    ("silent_since", "float8"),
)
#: What a commit adds to its process's totals of a host, besides the URLs it queued.
_TOTAL_COLUMNS = (
    ("host", "text"),
    ("done", "bigint"),
    ("failed", "bigint"),
    ("items", "bigint"),
    ("fetched", "bigint"),
)
#: The parameters of commit_pages, in order (the names prefix what they describe: f_ a fence
#: renewed, p_ a page closed, i_ an item, l_ a link, t_ a host's totals, k_ a counter).
_COMMIT_PAGES_PARAMETERS = (
    ("worker", "text"),
    ("ttl", "float8"),
    *((f"f_{name}", f"{kind}[]") for name, kind in _FENCE_COLUMNS),
    *((f"p_{name}", f"{kind}[]") for name, kind in _PAGE_COLUMNS),
    ("now", "float8"),
    ("i_request", "bigint[]"),
    ("i_data", "text[]"),
    *(
        (f"l_{name.strip()}", f"{kind}[]")
        for name, kind in zip(NEW_REQUEST_COLUMNS.split(","), _NEW_REQUEST_TYPES, strict=True)
    ),
    *((f"t_{name}", f"{kind}[]") for name, kind in _TOTAL_COLUMNS),
    ("k_name", "text[]"),
    ("k_value", "bigint[]"),
)


def _columns(prefix: str) -> str:
    return ", ".join(name for name, _ in _COMMIT_PAGES_PARAMETERS if name.startswith(prefix))


#: A commit of plain pages in one round trip: the statements of `_commit`, in its order, in a
#: function (a call is one statement: atomic without BEGIN and COMMIT, each of which cost the
#: writer a turn of the busy event loop). Refused (SQLSTATE CR001, nothing done) when a fence
#: or a page lease was lost: the caller then commits the batch statement by statement, which
#: sorts out what it keeps.
_COMMIT_PAGES = f"""CREATE OR REPLACE FUNCTION commit_pages(
    {", ".join(f"{name} {kind}" for name, kind in _COMMIT_PAGES_PARAMETERS)}
) RETURNS void LANGUAGE plpgsql AS $body$
#variable_conflict use_column
DECLARE
    n bigint;
BEGIN
    UPDATE hosts h SET lease_until = {_NOW} + ttl, kept = h.kept OR u.has_state,
        not_before = CASE WHEN u.has_state THEN u.not_before ELSE h.not_before END,
        failures = CASE WHEN u.has_state THEN u.failures ELSE h.failures END,
        opens = CASE WHEN u.has_state THEN u.opens ELSE h.opens END,
        open_until = CASE WHEN u.has_state THEN u.open_until ELSE h.open_until END,
        silent_since = CASE WHEN u.has_state THEN u.silent_since ELSE h.silent_since END
    FROM unnest({_columns("f_")}) u({", ".join(name for name, _ in _FENCE_COLUMNS)})
    WHERE h.host = u.host AND h.fence = u.fence AND h.owner = worker;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n < cardinality(f_host) THEN
        RAISE EXCEPTION 'a fence was lost' USING ERRCODE = 'CR001';
    END IF;
    SELECT count(*) INTO n FROM (SELECT r.id FROM requests r
        WHERE r.id = ANY(p_id) AND r.state = 1 ORDER BY r.id FOR UPDATE) locked;
    IF n < cardinality(p_id) THEN
        RAISE EXCEPTION 'a lease was lost' USING ERRCODE = 'CR001';
    END IF;
    INSERT INTO items (request_id, data) SELECT * FROM unnest(i_request, i_data);
    WITH added AS (
        INSERT INTO requests ({NEW_REQUEST_COLUMNS}) SELECT * FROM unnest({_columns("l_")})
        ON CONFLICT ((COALESCE(key, url))) DO NOTHING RETURNING host, state),
    totals AS (
        SELECT host, count(*) AS added, 0::bigint AS done,
            count(*) FILTER (WHERE state = {int(State.FAILED)}) AS failed, 0::bigint AS items,
            0::bigint AS fetched
        FROM added GROUP BY host
        UNION ALL SELECT u.host, 0, u.done, u.failed, u.items, u.fetched
        FROM unnest({_columns("t_")}) u({", ".join(name for name, _ in _TOTAL_COLUMNS)}))
    INSERT INTO counts (host, writer, added, done, failed, items, fetched)
    SELECT host, worker, sum(added), sum(done), sum(failed), sum(items), sum(fetched)
    FROM totals GROUP BY host ORDER BY host
    ON CONFLICT (host, writer) DO UPDATE SET added = counts.added + excluded.added,
        done = counts.done + excluded.done, failed = counts.failed + excluded.failed,
        items = counts.items + excluded.items, fetched = counts.fetched + excluded.fetched;
    {_closing(_columns("p_"), "now")};
    INSERT INTO counters (name, writer, value)
    SELECT u.name, worker, u.value FROM unnest(k_name, k_value) u(name, value)
    ON CONFLICT (name, writer) DO UPDATE SET value = counters.value + excluded.value;
END
$body$"""
_CALL_COMMIT_PAGES = (
    f"SELECT commit_pages({', '.join(f'${i + 1}' for i in range(len(_COMMIT_PAGES_PARAMETERS)))})"
)


#: Each page's fingerprint (settings.duplicates), by its row.
_FINGERPRINTS_V5 = """CREATE TABLE fingerprints (request_id bigint PRIMARY KEY, url text NOT NULL,
    body_hash bytea NOT NULL, signature bytea, duplicate_of text,
    exact bool NOT NULL DEFAULT false)"""
#: (tx, seq): the feed other processes read (fingerprints_since), as items'.
_FINGERPRINTS_FEED = [
    "ALTER TABLE fingerprints ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id(),"
    " ADD COLUMN seq bigserial",
    "CREATE INDEX fingerprints_tx ON fingerprints (tx, seq)",
]
#: A fingerprint kept again (a revisit) goes to the end of the feed.
_KEEP_FINGERPRINT = _SQL.keep_fingerprint + ", tx = excluded.tx, seq = excluded.seq"

#: Files stored whole (settings.files_store), by URL.
_FILES = """CREATE TABLE files (url text PRIMARY KEY, path text NOT NULL, checksum text NOT NULL,
    size bigint NOT NULL, content_type text)"""

_TABLES = [
    "CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL)",
    """CREATE TABLE requests (
        id bigserial PRIMARY KEY,
        url text NOT NULL,
        host text NOT NULL,
        callback text NOT NULL,
        priority int NOT NULL DEFAULT 0,
        depth int NOT NULL DEFAULT 0,
        meta text,
        any_content_type bool NOT NULL DEFAULT false,
        state smallint NOT NULL DEFAULT 0,
        not_before float8 NOT NULL DEFAULT 0,
        attempts int NOT NULL DEFAULT 0,
        lease text,
        status int,
        error text,
        message text,
        updated float8,
        latency float8,
        size int,
        key text,
        method text,
        body bytea,
        errback text,
        spec text,
        etag text,
        last_modified text,
        revisit smallint NOT NULL DEFAULT 0
    ) WITH (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.02,
            autovacuum_vacuum_insert_scale_factor = 0.05)""",
    "CREATE UNIQUE INDEX requests_identity ON requests ((COALESCE(key, url)))",
    "CREATE INDEX requests_queued ON requests (host, priority DESC, id) WHERE state = 0",
    "CREATE INDEX requests_leased ON requests (host) WHERE state = 1",
    # tx: the transaction that stored the item; those below the oldest transaction still
    # running are final, which makes (tx, id) a bookmark that never skips an item
    """CREATE TABLE items (id bigserial PRIMARY KEY, request_id bigint NOT NULL,
        data text NOT NULL, tx xid8 NOT NULL DEFAULT pg_current_xact_id())""",
    "CREATE INDEX items_tx ON items (tx, id)",
    """CREATE TABLE counters (name text NOT NULL, writer text NOT NULL,
        value bigint NOT NULL DEFAULT 0, PRIMARY KEY (name, writer))""",
    "CREATE TABLE robots (origin text PRIMARY KEY, fetched_at float8 NOT NULL, body text)",
    """CREATE TABLE hosts (
        host text PRIMARY KEY,
        owner text,
        fence bigint NOT NULL DEFAULT 0,
        lease_until float8,
        start_at float8 NOT NULL DEFAULT 0,
        kept bool NOT NULL DEFAULT false,
        not_before float8 NOT NULL DEFAULT 0,
        failures int NOT NULL DEFAULT 0,
        opens int NOT NULL DEFAULT 0,
        open_until float8 NOT NULL DEFAULT 0,
        silent_since float8
    ) WITH (autovacuum_vacuum_scale_factor = 0.01)""",
    "CREATE INDEX hosts_owned ON hosts (lease_until) WHERE owner IS NOT NULL",
    """CREATE TABLE counts (
        host text NOT NULL,
        writer text NOT NULL,
        added bigint NOT NULL DEFAULT 0,
        done bigint NOT NULL DEFAULT 0,
        failed bigint NOT NULL DEFAULT 0,
        items bigint NOT NULL DEFAULT 0,
        fetched bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (host, writer)
    )""",
    "CREATE TABLE sessions (name text PRIMARY KEY, cookies text NOT NULL)",
    "CREATE TABLE callbacks (name text PRIMARY KEY)",
    _FINGERPRINTS_V5,
    *_FINGERPRINTS_FEED,
    _FILES,
    """CREATE TABLE workers (
        id text PRIMARY KEY,
        machine text NOT NULL,
        pid int NOT NULL,
        started float8 NOT NULL,
        seen float8 NOT NULL,
        pages bigint NOT NULL DEFAULT 0,
        rate float8 NOT NULL DEFAULT 0,
        hungry bool NOT NULL DEFAULT false,
        granted bigint NOT NULL DEFAULT 0,
        closed bool NOT NULL DEFAULT false
    )""",
]

#: Migrations from each older schema version to the next.
_MIGRATIONS = {
    1: [  # 2: items carry their transaction (sink bookmarks); the spider's counters
        "ALTER TABLE items ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id()",
        "CREATE INDEX items_tx ON items (tx, id)",
        """CREATE TABLE counters (name text NOT NULL, writer text NOT NULL,
            value bigint NOT NULL DEFAULT 0, PRIMARY KEY (name, writer))""",
    ],
    2: [  # 3: revisits (validators kept, rows queued again, items replaced)
        "ALTER TABLE requests ADD COLUMN etag text, ADD COLUMN last_modified text,"
        " ADD COLUMN revisit smallint NOT NULL DEFAULT 0",
    ],
    3: [  # 4: host health: when a host's failures since its last success began
        "ALTER TABLE hosts ADD COLUMN silent_since float8",
    ],
    4: [_FINGERPRINTS_V5],  # 5: pages' fingerprints, for duplicates
    5: [_FILES],  # 6: files stored whole
    6: _FINGERPRINTS_FEED,  # 7: other processes read fingerprints as they commit
}
#: The revisit outcomes that take a page's items away (new ones, if any, come in).

_COLUMNS = (
    "id, url, host, callback, priority, depth, meta, any_content_type, attempts,"
    " method, body, errback, spec, etag, last_modified, revisit"
)


class _SessionLost(StoreError):
    """The session of a transaction ended before the transaction could end (asyncpg's
    InterfaceError "the underlying connection is closed", at its COMMIT or ROLLBACK). Where
    it is not run again, it is the StoreError it would have been."""


#: What asyncpg says of a connection that went away (InterfaceError's messages).
_GONE = ("connection is closed", "released back to the pool")
#: A session the server ended: after `idle_in_transaction_session_timeout` (a process paused
#: mid-transaction, whose locks would otherwise keep its hosts from the others), or a restart.
_LOST = (
    _SessionLost,
    asyncpg.exceptions.IdleInTransactionSessionTimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.AdminShutdownError,
    # what asyncpg raises when the end of a session reaches it in the middle of an operation
    asyncpg.exceptions.InternalClientError,
)
#: Errors worth running a transaction again for: two commits inserting the same new URLs
#: (a deadlock), or a session lost (the pool connects again; a lease lost meanwhile is
#: refused by its fence as usual).
_RETRY = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    *_LOST,
)


def _retrying(
    method: Callable[Concatenate[PostgresStore, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[PostgresStore, P], Coroutine[Any, Any, T]]:
    """The store method, run again on a deadlock or a lost session (see `_retried`)."""

    async def run(store: PostgresStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await _retried(store.location, lambda: method(store, *args, **kwargs))

    return run


def schema_name(spider_name: str) -> str:
    """The schema holding `spider_name`'s crawl (an identifier PostgreSQL keeps as it is)."""
    return "crawler_" + re.sub(r"[^a-z0-9_]", "_", spider_name.lower())[:50]


class PostgresStore:
    """The Store on a PostgreSQL database, shared by every process of a crawl (see above)."""

    shared = True
    #: Another schema version is refused at opening: never outdated once open.
    outdated = False

    def __init__(
        self, pool: asyncpg.Pool, dsn: str, schema: str, *, lease_ttl: float, readonly: bool
    ) -> None:
        self._pool = pool
        self.location = safe_dsn(dsn)
        self.schema = schema
        self.lease_ttl = lease_ttl
        self.schema_version = SCHEMA_VERSION
        self._readonly = readonly
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns() % 10**9:09d}"
        self._fences: dict[str, int] = {}  # hosts this process holds, by fence
        self._known_hosts: set[str] = set()
        self._known_callbacks: set[str] = set()
        self._commit_lock = asyncio.Lock()
        self._claims: asyncpg.pool.PoolConnectionProxy[Any] | None = None  # holds sink claims
        self._claimed: set[str] = set()
        #: Statements this process sent, and pages it committed (logged at close).
        self.statements = 0
        self.pages = 0

    # -- opening and closing ---------------------------------------------------------------

    @classmethod
    async def open(
        cls, dsn: str, spider_name: str, *, fresh: bool = False, lease_ttl: float = 10.0
    ) -> PostgresStore:
        """Open (creating it when missing) the crawl of `spider_name` in the database `dsn`,
        and register this process as one of its workers. `fresh` deletes the crawl first,
        refused while another process of it is alive."""
        schema = schema_name(spider_name)
        store: PostgresStore | None = None

        def count(_: object) -> None:
            if store is not None:
                store.statements += 1

        # a transaction left open longer than a lease (a process paused mid-commit) is ended
        # by the server, so that its row locks do not keep its hosts from the others
        idle = max(2 * lease_ttl, 5.0)
        pool = await _connect(dsn, schema, logger=count, idle=idle)
        store = cls(pool, dsn, schema, lease_ttl=lease_ttl, readonly=False)
        try:
            await store._prepare(spider_name, fresh)
        except BaseException:
            await pool.close()
            raise
        return store

    @classmethod
    async def open_readonly(cls, dsn: str, spider_name: str) -> PostgresStore:
        """Open an existing crawl for reading (stats, export, failures, report)."""
        schema = schema_name(spider_name)
        pool = await _connect(dsn, schema, size=2)
        store = cls(pool, dsn, schema, lease_ttl=10.0, readonly=True)
        try:
            found = await store._val(
                "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'meta'",
                schema,
            )
            if not found:
                raise ConfigError(f"no crawl of spider {spider_name!r} in {store.location}")
            version = await store._val("SELECT value FROM meta WHERE key = 'schema_version'")
            ttl = await store._val("SELECT value FROM meta WHERE key = 'lease_ttl'")
            store.lease_ttl = float(ttl or 10.0)
            if version not in {str(v) for v in (*_MIGRATIONS, SCHEMA_VERSION)}:
                raise StoreError(
                    f"{store.location} holds spider {spider_name!r} in store schema version "
                    f"{version}, this crawler uses {SCHEMA_VERSION}"
                )
            store.schema_version = int(version)
        except BaseException:
            await pool.close()
            raise
        return store

    async def _prepare(self, spider_name: str, fresh: bool) -> None:
        async with self._tx() as db:
            # one process at a time creates (or deletes) the schema
            await db.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.schema)
            exists = await db.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'meta'",
                self.schema,
            )
            if exists and fresh:
                alive = await db.fetchval(
                    f"SELECT count(*) FROM workers WHERE NOT closed AND seen > {_NOW} - $1",
                    self.lease_ttl,
                )
                if alive:
                    raise ConfigError(
                        f"--fresh refused: {alive} process(es) of spider {spider_name!r} are "
                        f"crawling from {self.location}; stop them first"
                    )
                await db.execute(f'DROP SCHEMA "{self.schema}" CASCADE')
                exists = 0
            if not exists:
                await db.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                for statement in _TABLES:
                    await db.execute(statement)
                await db.executemany(
                    "INSERT INTO meta (key, value) VALUES ($1, $2)",
                    [
                        ("schema_version", str(SCHEMA_VERSION)),
                        ("spider", spider_name),
                        ("lease_ttl", str(self.lease_ttl)),
                    ],
                )
            meta = {row[0]: row[1] for row in await db.fetch("SELECT key, value FROM meta")}
            version = meta.get("schema_version", "")
            while version.isdigit() and int(version) in _MIGRATIONS:
                for statement in _MIGRATIONS[int(version)]:
                    await db.execute(statement)
                version = meta["schema_version"] = str(int(version) + 1)
                await db.execute("UPDATE meta SET value = $1 WHERE key = 'schema_version'", version)
                log.info("migrated %s to store schema version %s", self.location, version)
            if meta.get("schema_version") != str(SCHEMA_VERSION):
                raise StoreError(
                    f"{self.location} holds spider {spider_name!r} in store schema version "
                    f"{meta.get('schema_version')}, this crawler uses {SCHEMA_VERSION}: "
                    "start over with --fresh"
                )
            # the function as this crawler has it (stores of any version get it, and crawlers
            # of earlier versions, which never call it, still open them)
            await db.execute(_COMMIT_PAGES)
            await db.execute(
                "INSERT INTO meta (key, value) VALUES ('lease_ttl', $1)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                str(self.lease_ttl),
            )
            await db.execute(
                f"INSERT INTO workers (id, machine, pid, started, seen)"
                f" VALUES ($1, $2, $3, {_NOW}, {_NOW})",
                self.worker,
                socket.gethostname(),
                os.getpid(),
            )

    async def close(self) -> None:
        """Hand back this process's hosts and leased rows, mark it gone, disconnect."""
        try:
            if not self._readonly:
                with contextlib.suppress(asyncpg.PostgresError, OSError, StoreError):
                    async with self._tx() as db:
                        await db.execute(
                            "UPDATE requests SET state = 0, lease = NULL"
                            " WHERE state = 1 AND lease = $1",
                            self.worker,
                        )
                        await db.execute(
                            "UPDATE hosts SET owner = NULL, lease_until = NULL WHERE owner = $1",
                            self.worker,
                        )
                        await db.execute(
                            f"UPDATE workers SET closed = true, seen = {_NOW} WHERE id = $1",
                            self.worker,
                        )
            if self.pages:
                log.info(
                    "PostgreSQL store: %d statements for %d pages (%.2f per page)",
                    self.statements,
                    self.pages,
                    self.statements / self.pages,
                )
        finally:
            if self._claims is not None:
                claims, self._claims = self._claims, None
                self._claimed.clear()
                with contextlib.suppress(asyncpg.PostgresError, OSError):
                    # its advisory locks go (the pool's reset leaves sessions as they are)
                    await claims.execute("SELECT pg_advisory_unlock_all()")
                    await self._pool.release(claims)
            await self._pool.close()

    async def claim(self, key: str, wait: float = 0.0) -> bool:
        # a session advisory lock, on a connection held for the store's lifetime: it is let go
        # when this process closes the store or dies
        if key in self._claimed:
            return True
        if self._claims is None:
            self._claims = await self._pool.acquire()
        lock = f"{self.schema}:{key}"
        self.statements += 1
        if wait <= 0:
            claimed = bool(
                await self._claims.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", lock)
            )
        else:
            try:
                async with self._claims.transaction():
                    await self._claims.execute(f"SET LOCAL lock_timeout = {int(wait * 1000)}")
                    await self._claims.execute("SELECT pg_advisory_lock(hashtext($1))", lock)
                claimed = True
            except asyncpg.exceptions.LockNotAvailableError:
                claimed = False
        if claimed:
            self._claimed.add(key)
        return claimed

    # -- leases ----------------------------------------------------------------------------

    @_retrying
    async def acquire_hosts(self, limit: int, host_budget: int | None) -> list[HostLease]:
        if limit <= 0:
            return []
        async with self._tx() as db:
            rows = await db.fetch(
                f"""WITH c AS (
                    SELECT h.host FROM hosts h
                    WHERE (h.owner IS NULL OR h.lease_until < {_NOW})
                      AND (EXISTS (SELECT 1 FROM requests r WHERE r.host = h.host AND r.state = 0)
                        OR EXISTS (SELECT 1 FROM requests r WHERE r.host = h.host AND r.state = 1))
                      AND ($3::bigint IS NULL OR COALESCE(
                        (SELECT sum(fetched) FROM counts n WHERE n.host = h.host), 0) < $3)
                    LIMIT $2 FOR UPDATE OF h SKIP LOCKED)
                UPDATE hosts h SET owner = $1, lease_until = {_NOW} + $4, fence = h.fence + 1
                FROM c WHERE h.host = c.host
                RETURNING h.host, h.fence, h.kept, h.not_before, h.failures, h.opens,
                    h.open_until, h.silent_since, greatest(h.start_at - {_NOW}, 0)""",
                self.worker,
                limit,
                host_budget,
                self.lease_ttl,
            )
            if not rows:
                return []
            hosts = sorted(row[0] for row in rows)
            # rows a previous holder had leased are queued again
            await db.execute(
                "UPDATE requests SET state = 0, lease = NULL WHERE host = ANY($1) AND state = 1",
                hosts,
            )
            fetched: dict[str, int] = {
                row[0]: int(row[1])
                for row in await db.fetch(
                    "SELECT host, sum(fetched) FROM counts WHERE host = ANY($1) GROUP BY host",
                    hosts,
                )
            }
        leases = []
        for host, fence, kept, *health, start_in in rows:
            self._fences[host] = fence
            self._known_hosts.add(host)
            state = HostState(host, *health) if kept else None
            leases.append(HostLease(host, fence, state, fetched.get(host, 0), start_in))
        return leases

    @_retrying
    async def heartbeat(
        self, held: Sequence[tuple[str, int]], pages: int, rate: float, hungry: bool
    ) -> tuple[set[str], int | None]:
        kept: set[str] = set()
        held = sorted(held)
        async with self._connection() as db:
            if held:
                rows = await db.fetch(
                    f"UPDATE hosts h SET lease_until = {_NOW} + $3"
                    " FROM unnest($1::text[], $2::bigint[]) u(host, fence)"
                    " WHERE h.host = u.host AND h.fence = u.fence AND h.owner = $4"
                    " RETURNING h.host",
                    [host for host, _ in held],
                    [fence for _, fence in held],
                    self.lease_ttl,
                    self.worker,
                )
                kept = {row[0] for row in rows}
            for host, _ in held:
                if host not in kept:
                    self._fences.pop(host, None)
            await db.execute(
                f"UPDATE workers SET seen = {_NOW}, pages = $2, rate = $3, hungry = $4,"
                " closed = false WHERE id = $1",
                self.worker,
                pages,
                rate,
                hungry,
            )
            live = await db.fetchrow(
                "SELECT count(*) FILTER (WHERE hungry AND id <> $1), count(*) FROM workers"
                f" WHERE NOT closed AND seen > {_NOW} - $2",
                self.worker,
                self.lease_ttl,
            )
            others_hungry, alive = (live[0], live[1]) if live is not None else (0, 1)
            share = None
            if others_hungry:
                held_total = await db.fetchval(
                    f"SELECT count(*) FROM hosts WHERE owner IS NOT NULL AND lease_until > {_NOW}"
                )
                share = max(1, math.ceil(held_total / max(alive, 1)))
        return kept, share

    @_retrying
    async def release_hosts(self, hosts: Sequence[tuple[str, int, float]]) -> None:
        if not hosts:
            return
        ordered = sorted(hosts)
        async with self._tx() as db:
            await db.execute(
                "UPDATE requests SET state = 0, lease = NULL"
                " WHERE host = ANY($1) AND state = 1 AND lease = $2",
                [host for host, _, _ in ordered],
                self.worker,
            )
            await db.execute(
                f"UPDATE hosts h SET owner = NULL, lease_until = NULL,"
                f" start_at = {_NOW} + u.start_in"
                " FROM unnest($1::text[], $2::bigint[], $3::float8[]) u(host, fence, start_in)"
                " WHERE h.host = u.host AND h.fence = u.fence AND h.owner = $4",
                [host for host, _, _ in ordered],
                [fence for _, fence, _ in ordered],
                [start_in for _, _, start_in in ordered],
                self.worker,
            )
        for host, fence, _ in ordered:
            if self._fences.get(host) == fence:
                del self._fences[host]

    async def crawl_done(self, host_budget: int | None, max_pages: int | None) -> bool:
        if max_pages is not None:
            fetched = await self._val("SELECT COALESCE(sum(fetched), 0) FROM counts")
            if fetched >= max_pages:
                return True
        if host_budget is None:
            return bool(
                await self._val(
                    "SELECT NOT EXISTS (SELECT 1 FROM requests WHERE state = 0)"
                    " AND NOT EXISTS (SELECT 1 FROM requests WHERE state = 1)"
                )
            )
        return bool(
            await self._val(
                "SELECT NOT EXISTS (SELECT 1 FROM requests r WHERE r.state <= 1 AND COALESCE("
                "(SELECT sum(fetched) FROM counts n WHERE n.host = r.host), 0) < $1)",
                host_budget,
            )
        )

    @_retrying
    async def grant_pages(self, want: int, max_pages: int) -> int:
        async with self._tx() as db:
            await db.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.schema + ":grant")
            # one statement, one snapshot: a commit landing between two reads would count
            # its pages as neither granted nor fetched
            fetched, outstanding = await db.fetchrow(
                "WITH f AS (SELECT writer, sum(fetched) AS n FROM counts GROUP BY writer)"
                " SELECT (SELECT COALESCE(sum(n), 0) FROM f),"
                " (SELECT COALESCE(sum(greatest(w.granted - COALESCE(f.n, 0), 0)), 0)"
                " FROM workers w LEFT JOIN f ON f.writer = w.id"
                f" WHERE w.id = $1 OR (NOT w.closed AND w.seen > {_NOW} - $2))",
                self.worker,
                self.lease_ttl,
            ) or (0, 0)
            give = max(0, min(want, max_pages - int(fetched) - int(outstanding)))
            if give:
                await db.execute(
                    "UPDATE workers SET granted = granted + $2 WHERE id = $1", self.worker, give
                )
        return give

    async def workers(self) -> list[WorkerInfo]:
        rows = await self._fetch(
            f"SELECT id, machine, pid, started, seen, pages, rate,"
            f" NOT closed AND seen > {_NOW} - $1 FROM workers ORDER BY started",
            self.lease_ttl,
        )
        return [WorkerInfo(*row) for row in rows]

    async def in_use(self) -> bool:
        """Whether a process of the crawl is alive (its heartbeat is recent)."""
        return any(worker.alive for worker in await self.workers())

    # -- the frontier rows -----------------------------------------------------------------

    @_retrying
    async def add(self, requests: Sequence[NewRequest]) -> None:
        if requests:
            async with self._tx() as db:
                counts: dict[str, list[int]] = {}
                await self._insert(db, requests, counts)
                await self._count(db, counts)

    async def lease(self, host: str, limit: int, now: float) -> list[StoredRequest]:
        fence = self._fences.get(host)
        if fence is None:
            return []
        rows = await self._fetch(
            f"UPDATE requests SET state = 1, lease = $1 WHERE id IN ("
            f" SELECT id FROM requests WHERE state = 0 AND host = $2 AND not_before <= $3"
            f" ORDER BY priority DESC, id LIMIT $4 FOR UPDATE SKIP LOCKED)"
            f" AND EXISTS (SELECT 1 FROM hosts WHERE host = $2 AND owner = $1 AND fence = $5)"
            f" RETURNING {_COLUMNS}",
            self.worker,
            host,
            now,
            limit,
            fence,
        )
        leased = [
            StoredRequest(*tuple(row)[:-1], row[-1] == REVISIT_QUEUED, fence=fence)  # type: ignore[misc,call-arg]
            for row in rows
        ]
        leased.sort(key=lambda r: (-r.priority, r.id))
        return leased

    async def next_due(self, host: str) -> float | None:
        due = await self._val(_SQL.next_due, host)
        return None if due is None else float(due)

    async def commit(
        self,
        outcomes: Sequence[Outcome],
        hosts: Sequence[HostState] = (),
        *,
        state: str | None = None,
        counters: Mapping[str, int] | None = None,
        marks: Mapping[str, str] | None = None,
    ) -> list[Outcome]:
        if not outcomes and not hosts and state is None and not counters and not marks:
            return []
        for attempt in range(5):
            try:
                if state is None and not marks and outcomes and self._plain(outcomes):
                    async with self._commit_lock, self._connection() as db:
                        if await self._commit_pages(db, outcomes, hosts, counters):
                            return list(outcomes)
                async with self._commit_lock, self._tx() as db:
                    committed = await self._commit(db, outcomes, hosts)
                    kept = [outcome for outcome in committed if not outcome.lost]
                    total = commit_counters(kept, counters)
                    await self._keep(db, state, total)
                    for key, value in (marks or {}).items():
                        await db.execute(_SQL.keep_mark, f"mark:{key}", value)
                    return committed
            except _RETRY as exc:  # two batches inserting the same new URLs: run it again
                if attempt == 4:
                    raise StoreError(f"store {self.location}: {exc}") from exc
                log.debug("commit retried: %s", exc)
        raise AssertionError("unreachable")

    def _plain(self, outcomes: Sequence[Outcome]) -> bool:
        """Whether `commit_pages` can commit `outcomes`: no redirect to claim, no cookies, no
        revisit replacing items, no fingerprint or file, no sitemap dates, no host or callback
        new to this process."""
        for outcome in outcomes:
            if (
                outcome.final_url is not None
                or outcome.jars
                or outcome.revisit in REPLACING
                or outcome.fingerprint is not None
                or outcome.files
            ):
                return False
            for link in outcome.links:
                if (
                    link.lastmod
                    or link.host not in self._known_hosts
                    or link.callback not in self._known_callbacks
                    or (link.errback and link.errback not in self._known_callbacks)
                ):
                    return False
        return True

    async def _commit_pages(
        self,
        db: Db,
        outcomes: Sequence[Outcome],
        hosts: Sequence[HostState],
        counters: Mapping[str, int] | None,
    ) -> bool:
        """Commit plain outcomes (see `_plain`) in one statement; False when it was refused
        (a fence or a lease was lost: nothing was done)."""
        states = {state.host: state for state in hosts}
        fences = sorted(
            {(o.request.host, o.request.fence) for o in outcomes}
            | {(h, self._fences[h]) for h in states if h in self._fences}
        )
        pages = sorted(outcomes, key=lambda o: o.request.id)
        counts: dict[str, list[int]] = {}  # host: [done, failed, items, fetched]
        total = dict(counters or {})
        for outcome in pages:
            row = counts.setdefault(outcome.request.host, [0, 0, 0, 0])
            row[0] += outcome.state is State.DONE
            row[1] += outcome.state is State.FAILED
            row[2] += len(outcome.items)
            row[3] += outcome.state is not State.QUEUED and outcome.fetched
            add_counters(total, outcome.counters)
        links = sorted((link for o in pages for link in o.links), key=lambda r: r.key or r.url)
        link_columns = (
            zip(*(r.row() for r in links), strict=True) if links else [[]] * len(_NEW_REQUEST_TYPES)
        )
        totals = sorted(counts.items())
        names = sorted(total)
        try:
            await db.execute(
                _CALL_COMMIT_PAGES,
                self.worker,
                self.lease_ttl,
                *_fence_args(fences, states),
                *_close_args(pages, time.time()),
                [o.request.id for o in pages for _ in o.items],
                [item for o in pages for item in o.items],
                *(list(column) for column in link_columns),
                [host for host, _ in totals],
                *([row[i] for _, row in totals] for i in range(4)),
                names,
                [total[name] for name in names],
            )
        except asyncpg.PostgresError as exc:
            if exc.sqlstate == "CR001":
                return False
            raise
        self.pages += len(pages)
        return True

    async def _commit(
        self, db: Db, outcomes: Sequence[Outcome], hosts: Sequence[HostState]
    ) -> list[Outcome]:
        now = time.time()
        # 1. the fence: renew the leases the outcomes were fetched under, keep host states
        states = {state.host: state for state in hosts}
        fences = sorted(
            {(o.request.host, o.request.fence) for o in outcomes}
            | {(h, self._fences[h]) for h in states if h in self._fences}
        )
        # 2. in the same statement, the pages to close: rows still leased under a kept fence,
        # locked until the commit (only rows this transaction closes keep their items and
        # links). Locked now, updated last: an updated row is a new entry in the unique index,
        # on which another process's insert of the same URL waits; were it updated before this
        # transaction's inserts, those inserts could wait on that process in turn: a deadlock,
        # and PostgreSQL's deadlock_timeout (1 s) before one of the two is retried.
        kept: set[tuple[str, int]] = set()
        closed: set[int] = set()
        if fences:
            leased = sorted((o.request.id, o.request.host, o.request.fence) for o in outcomes)
            fenced = _fence_args(fences, states)
            rows = await db.fetch(
                f"""WITH fenced AS (UPDATE hosts h SET lease_until = {_NOW} + $9,
                    kept = h.kept OR u.has_state,
                    not_before = CASE WHEN u.has_state THEN u.not_before ELSE h.not_before END,
                    failures = CASE WHEN u.has_state THEN u.failures ELSE h.failures END,
                    opens = CASE WHEN u.has_state THEN u.opens ELSE h.opens END,
                    open_until = CASE WHEN u.has_state THEN u.open_until ELSE h.open_until END,
                    silent_since = CASE WHEN u.has_state THEN u.silent_since
                        ELSE h.silent_since END
                FROM unnest($1::text[], $2::bigint[], $3::bool[], $4::float8[], $5::int[],
                    $6::int[], $7::float8[], $10::float8[]) u(host, fence, has_state,
                    not_before, failures, opens, open_until, silent_since)
                WHERE h.host = u.host AND h.fence = u.fence AND h.owner = $8
                RETURNING h.host, h.fence),
                locked AS (SELECT r.id FROM requests r
                    JOIN unnest($11::bigint[], $12::text[], $13::bigint[]) p(id, host, fence)
                        ON r.id = p.id
                    JOIN fenced f ON f.host = p.host AND f.fence = p.fence
                    WHERE r.state = 1 ORDER BY r.id FOR UPDATE OF r)
                SELECT host, fence, NULL::bigint FROM fenced
                UNION ALL SELECT NULL, NULL, id FROM locked""",
                *fenced[:7],
                self.worker,
                self.lease_ttl,
                fenced[7],
                [page[0] for page in leased],
                [page[1] for page in leased],
                [page[2] for page in leased],
            )
            kept = {(row[0], row[1]) for row in rows if row[0] is not None}
            closed = {row[2] for row in rows if row[2] is not None}
        accepted = [o for o in outcomes if (o.request.host, o.request.fence) in kept]
        jars = {name: text for o in accepted if o.jars for name, text in o.jars.items()}
        if jars:
            await db.executemany(_SQL.keep_jar, sorted(jars.items()))
        counts: dict[str, list[int]] = {}  # host: [added, done, failed, items, fetched]
        committed: list[Outcome] = []
        for outcome in outcomes:
            if outcome.request.id not in closed:
                committed.append(
                    dataclasses.replace(
                        outcome, items=[], links=[], jars=None, lost=True, message="lost lease"
                    )
                )
                continue
            if outcome.final_url is not None:
                outcome = await self._claim_final(db, outcome, now, counts)
            committed.append(outcome)
            row = counts.setdefault(outcome.request.host, [0, 0, 0, 0, 0])
            row[1] += outcome.state is State.DONE
            row[2] += outcome.state is State.FAILED
            row[3] += len(outcome.items)
            row[4] += outcome.state is not State.QUEUED and outcome.fetched
        self.pages += len(closed)
        lost = len(outcomes) - len(closed)
        if lost:
            log.warning("%d page outcomes refused: their hosts went to another process", lost)
        # 3. a revisit's old items, the items, the links found (in one order for every
        # process: two commits adding the same URLs wait on each other, never in a cycle)
        replaced = [o for o in committed if not o.lost and o.revisit in REPLACING]
        if replaced:
            pages = {o.request.id: o.request.host for o in replaced}
            for (request_id,) in await db.fetch(
                "DELETE FROM items WHERE request_id = ANY($1::bigint[]) RETURNING request_id",
                sorted(pages),
            ):
                counts.setdefault(pages[request_id], [0, 0, 0, 0, 0])[3] -= 1
        forget, keep = sql.fingerprint_rows(committed)
        if forget:
            await db.executemany(_SQL.forget_fingerprint, forget)
        if keep:
            await db.executemany(_KEEP_FINGERPRINT, keep)
        files = sql.file_rows(committed)
        if files:
            await db.executemany(_SQL.keep_file, files)
        items = [(o.request.id, item) for o in committed if not o.lost for item in o.items]
        if items:
            await db.execute(
                "INSERT INTO items (request_id, data)"
                " SELECT * FROM unnest($1::bigint[], $2::text[])",
                [request_id for request_id, _ in items],
                [data for _, data in items],
            )
        links = [link for o in committed for link in o.links]
        if links:
            await self._insert(db, links, counts)
            query = _in(db)
            for outcome in committed:
                for host in await sql.mark_unchanged_by_sitemap(query, sql.POSTGRES, outcome, now):
                    counts.setdefault(host, [0, 0, 0, 0, 0])[1] += 1
        # 4. close the pages, and add to this process's totals, in one statement
        done = [o for o in accepted if o.request.id in closed]
        totals = self._totals(counts)
        if done:
            close = _close_args(done, now)
            if totals:
                await db.execute(_CLOSE_AND_COUNT, *close, *totals)
            else:
                await db.execute(_CLOSE, *close)
        elif totals:
            await db.execute(_COUNT, *totals)
        return committed

    async def _keep(self, db: Db, state: str | None, counters: dict[str, int]) -> None:
        """Keep the spider's state and add to this process's rows of its counters."""
        if state is not None:
            await db.execute(_SQL.keep_mark, f"mark:{STATE_MARK}", state)
        if counters:
            names = sorted(counters)
            await db.execute(
                """INSERT INTO counters (name, writer, value)
                SELECT u.name, $1, u.value FROM unnest($2::text[], $3::bigint[]) u(name, value)
                ON CONFLICT (name, writer) DO UPDATE SET value = counters.value + excluded.value""",
                self.worker,
                names,
                [counters[name] for name in names],
            )

    async def taken(self, identities: Sequence[str]) -> set[str]:
        if not identities:
            return set()
        rows = await self._fetch(_SQL.taken(len(identities)), list(identities))
        return {row[0] for row in rows}

    async def counters(self) -> dict[str, int]:
        if self.schema_version < 2:  # read-only, before a resume migrated it
            return {}
        rows = await self._fetch("SELECT name, sum(value) FROM counters GROUP BY name")
        return {row[0]: int(row[1]) for row in rows}

    async def _claim_final(
        self, db: Db, outcome: Outcome, now: float, counts: dict[str, list[int]]
    ) -> Outcome:
        """Mark a redirect's final URL visited (see SQLiteStore._claim_final)."""
        assert outcome.final_url is not None
        url, host = outcome.final_url
        key = outcome.final_key
        await self._add_hosts(db, [host])
        inserted = await db.fetchval(
            "INSERT INTO requests (url, host, callback, state, status, updated, key)"
            " VALUES ($1, $2, $3, 2, $4, $5, $6) ON CONFLICT ((COALESCE(key, url))) DO NOTHING"
            " RETURNING id",
            url,
            host,
            outcome.request.callback,
            outcome.status,
            now,
            key,
        )
        if inserted is not None:
            row = counts.setdefault(host, [0, 0, 0, 0, 0])
            row[0] += 1
            row[1] += 1
            return outcome
        claimed = await db.fetchval(
            "UPDATE requests SET state = 2, status = $1, updated = $2,"
            f" message = '{REDIRECTED}' WHERE COALESCE(key, url) = $3"
            " AND state = 0 RETURNING host",
            outcome.status,
            now,
            key or url,
        )
        if claimed is not None:
            counts.setdefault(claimed, [0, 0, 0, 0, 0])[1] += 1
            return outcome
        return crawled_on_its_own(outcome, url)

    async def _insert(
        self, db: Db, requests: Sequence[NewRequest], counts: dict[str, list[int]]
    ) -> None:
        # one order for every process: two commits adding the same URLs never deadlock
        ordered = sorted(requests, key=lambda r: r.key or r.url)
        await self._add_hosts(db, sorted({r.host for r in ordered}))
        names = {r.callback for r in ordered} | {r.errback for r in ordered if r.errback}
        new_names = sorted(names - self._known_callbacks)
        if new_names:
            await db.execute(
                "INSERT INTO callbacks (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
                new_names,
            )
            self._known_callbacks.update(new_names)
        rows = await db.fetch(
            f"""INSERT INTO requests ({NEW_REQUEST_COLUMNS})
            SELECT * FROM unnest({_NEW_REQUEST_ARRAYS})
            ON CONFLICT ((COALESCE(key, url))) DO NOTHING
            RETURNING host, state""",
            *(list(column) for column in zip(*(r.row() for r in ordered), strict=True)),
        )
        for host, state in rows:
            row = counts.setdefault(host, [0, 0, 0, 0, 0])
            row[0] += 1
            row[2] += state == State.FAILED

    async def _add_hosts(self, db: Db, hosts: Sequence[str]) -> None:
        new = [host for host in hosts if host not in self._known_hosts]
        if new:
            await db.execute(
                "INSERT INTO hosts (host) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING", new
            )
            self._known_hosts.update(new)

    async def _count(self, db: Db, counts: dict[str, list[int]]) -> None:
        """Add to this process's running totals (rows no other process writes)."""
        totals = self._totals(counts)
        if totals:
            await db.execute(_COUNT, *totals)

    def _totals(self, counts: dict[str, list[int]]) -> tuple[Any, ...] | None:
        """The parameters of _COUNT for `counts` (host: added, done, failed, items, fetched),
        or None when there is nothing to add."""
        rows = sorted((host, *row) for host, row in counts.items() if any(row))
        if not rows:
            return None
        return (self.worker, *([row[i] for row in rows] for i in range(6)))

    async def release(self, ids: Sequence[int] | None = None) -> int:
        if ids is None:
            result = await self._execute(
                "UPDATE requests SET state = 0, lease = NULL WHERE state = 1 AND lease = $1",
                self.worker,
            )
        else:
            result = await self._execute(
                "UPDATE requests SET state = 0, lease = NULL"
                " WHERE id = ANY($1) AND state = 1 AND lease = $2",
                list(ids),
                self.worker,
            )
        return int(result.rsplit(" ", 1)[1])

    @_retrying
    async def fail_host(self, host: str, leased: Sequence[int], *, error: str, message: str) -> int:
        now = time.time()
        async with self._tx() as db:
            failed = await db.fetchval(
                "WITH f AS (UPDATE requests SET state = 3, error = $1, message = $2,"
                " updated = $3, latency = NULL, size = NULL, lease = NULL"
                " WHERE host = $4 AND (state = 0 OR (state = 1 AND id = ANY($5)))"
                " RETURNING 1) SELECT count(*) FROM f",
                error,
                message,
                now,
                host,
                list(leased),
            )
            await self._count(db, {host: [0, 0, int(failed), 0, 0]})
        return int(failed)

    @_retrying
    async def requeue_stale(self, before: float) -> int:
        async with self._tx() as db:
            # a new revisit: what the last one changed is no longer news
            await db.execute(_SQL.old_news)
            rows = await db.fetch(
                "WITH r AS (UPDATE requests SET state = 0, revisit = 1, attempts = 0,"
                f" not_before = 0 WHERE {sql.stale(sql.POSTGRES)}"
                " RETURNING host, latency IS NOT NULL AS fetched)"
                " SELECT host, count(*), count(*) FILTER (WHERE fetched) FROM r GROUP BY host",
                before,
            )
            await self._count(db, {h: [0, -int(n), 0, 0, -int(f)] for h, n, f in rows})
        return sum(int(n) for _, n, _ in rows)

    @_retrying
    async def requeue_failed(self, host: str | None = None, error: str | None = None) -> int:
        async with self._tx() as db:
            await db.execute(
                "UPDATE hosts SET kept = false, not_before = 0, failures = 0, opens = 0,"
                " open_until = 0, silent_since = NULL WHERE $1::text IS NULL OR host = $1",
                host,
            )
            rows = await db.fetch(
                "WITH r AS (UPDATE requests SET state = 0, attempts = 0, not_before = 0,"
                " error = NULL, message = NULL, status = NULL WHERE state = 3"
                " AND ($1::text IS NULL OR host = $1) AND ($2::text IS NULL OR error = $2)"
                " RETURNING host, latency IS NOT NULL AS fetched)"
                " SELECT host, count(*), count(*) FILTER (WHERE fetched) FROM r GROUP BY host",
                host,
                error,
            )
            await self._count(db, {h: [0, 0, -int(n), 0, -int(f)] for h, n, f in rows})
        return sum(int(n) for _, n, _ in rows)

    # -- reading ---------------------------------------------------------------------------

    def failures(
        self, host: str | None = None, error: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        return sql.failures(self._query, sql.POSTGRES, host, error)

    async def files_known(self, urls: Sequence[str]) -> dict[str, FileRecord]:
        if self.schema_version < 6:
            return {}
        return await sql.files_known(self._query, sql.POSTGRES, urls)

    async def fingerprints_since(
        self, cursor: str | None, limit: int
    ) -> tuple[list[tuple[str, bytes, bytes | None]], str | None]:
        if self.schema_version < 7:  # (read-only, before a resume migrated it: none)
            return [], cursor
        rows, cursor = await self._committed_since(
            "url, body_hash, signature",
            "fingerprints",
            "seq",
            cursor,
            limit,
            "duplicate_of IS NULL",
        )
        return [sql.fingerprint_row(row[0], row[1], row[2]) for row in rows], cursor

    async def duplicates(self) -> AsyncIterator[dict[str, Any]]:
        if self.schema_version >= 5:
            async for duplicate in sql.duplicates(self._query, sql.POSTGRES):
                yield duplicate

    async def jars(self) -> dict[str, str]:
        return {name: text for name, text in await self._fetch(_SQL.jars)}

    async def host_states(self, host: str | None = None) -> list[HostState]:
        columns = (
            "SELECT host, not_before, failures, opens, open_until, silent_since FROM hosts"
            " WHERE kept"
        )
        if host is None:
            rows = await self._fetch(columns)
        else:
            rows = await self._fetch(columns + " AND host = $1", host)
        return [HostState(*row) for row in rows]

    async def robots_get(self, origin: str) -> tuple[float, str | None] | None:
        row = await self._fetch(_SQL.robots_get, origin)
        return (row[0][0], row[0][1]) if row else None

    async def robots_put(self, origin: str, fetched_at: float, body: str | None) -> None:
        await self._execute(_SQL.robots_put, origin, fetched_at, body)

    async def counts(self) -> Counts:
        row = (
            await self._fetch(
                "SELECT COALESCE(sum(added), 0), COALESCE(sum(done), 0),"
                " COALESCE(sum(failed), 0), COALESCE(sum(items), 0),"
                " COALESCE(sum(fetched), 0) FROM counts"
            )
        )[0]
        added, done, failed, items, fetched = (int(v) for v in row)
        return Counts(added - done - failed, 0, done, failed, items, fetched)

    async def host_totals(self) -> dict[str, Counts]:
        rows = await self._fetch(
            "SELECT host, sum(added), sum(done), sum(failed), sum(items), sum(fetched)"
            " FROM counts GROUP BY host"
        )
        totals = {}
        for host, *values in rows:
            added, done, failed, items, fetched = (int(v) for v in values)
            totals[host] = Counts(added - done - failed, 0, done, failed, items, fetched)
        return totals

    async def summary(self) -> Summary:
        return await sql.summary(
            lambda query, args: self._fetch(query, *args),
            sql.POSTGRES,
            counts=await self.counts(),
            totals=await self.host_totals(),
            politeness=await self.host_states(),
            counters=await self.counters(),
            workers=await self.workers(),
        )

    async def callbacks_pending(self, known: Callable[[str], bool]) -> set[str]:
        pending = set()
        for (name,) in await self._fetch("SELECT name FROM callbacks"):
            self._known_callbacks.add(name)
            if not known(name) and await self._fetch(sql.callback_in_use(sql.POSTGRES), name):
                pending.add(name)
        return pending

    async def items(self) -> AsyncIterator[str]:
        last = 0
        while rows := await self._fetch(
            "SELECT id, data FROM items WHERE id > $1 ORDER BY id LIMIT 1000", last
        ):
            for row in rows:
                yield row[1]
            last = rows[-1][0]

    def changed_items(self) -> AsyncIterator[str]:
        return sql.changed_items(self._query, sql.POSTGRES)

    async def items_since(
        self, cursor: str | None, limit: int
    ) -> tuple[list[tuple[int, str]], str | None]:
        rows, cursor = await self._committed_since("id, data", "items", "id", cursor, limit)
        return [(row[0], row[1]) for row in rows], cursor

    async def _committed_since(
        self, columns: str, table: str, key: str, cursor: str | None, limit: int, where: str = ""
    ) -> tuple[list[asyncpg.Record], str | None]:
        """Up to `limit` rows (`columns`) of `table` committed after the bookmark `cursor`, and
        the bookmark after them. Row keys are not in commit order across processes: rows of
        transactions older than the oldest one still running are final, so those are read in
        (tx, `key`) order and the bookmark is the last (tx, `key`) read (`where`: more to
        match)."""
        tx, _, last = (cursor or "0:0").partition(":")
        rows = await self._fetch(
            f"""SELECT {columns}, tx::text, {key} FROM {table}
            WHERE (tx, {key}) > ($1::text::xid8, $2::bigint)
                AND tx < pg_snapshot_xmin(pg_current_snapshot()) {"AND " + where if where else ""}
            ORDER BY tx, {key} LIMIT $3""",
            tx,
            int(last),
            limit,
        )
        if not rows:
            return [], cursor
        return rows, f"{rows[-1][-2]}:{rows[-1][-1]}"

    async def items_waiting(self, cursor: str | None) -> int:
        tx, _, last = (cursor or "0:0").partition(":")
        value = await self._val(
            "SELECT count(*) FROM items WHERE (tx, id) > ($1::text::xid8, $2::bigint)",
            tx,
            int(last),
        )
        return int(value or 0)

    async def get_mark(self, key: str) -> str | None:
        value = await self._val(_SQL.get_mark, f"mark:{key}")
        return None if value is None else str(value)

    async def move_mark(self, key: str, old: str | None, new: str) -> bool:
        if old is None:
            result = await self._execute(_SQL.new_mark, f"mark:{key}", new)
        else:
            result = await self._execute(_SQL.move_mark, f"mark:{key}", old, new)
        return result.endswith(" 1")

    # -- helpers ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Db]:
        try:
            async with self._pool.acquire() as db:
                yield db
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            if isinstance(exc, _RETRY):
                raise
            raise StoreError(f"store {self.location}: {exc}") from exc

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[Db]:
        """One transaction, committed whole or rolled back (cancellation included). A session
        that ended before its COMMIT went out is a lost session (`_retried` runs it again):
        nothing of it was committed."""
        async with self._connection() as db:
            try:
                async with db.transaction():
                    yield db
            except asyncpg.InterfaceError as exc:
                # asyncpg checks the connection before it sends COMMIT or ROLLBACK: gone (or
                # taken back by the pool as it went), nothing of the transaction committed
                if any(gone in str(exc) for gone in _GONE):
                    raise _SessionLost(f"store {self.location}: {exc}") from exc
                raise

    async def _query(self, query: str, params: Sequence[Any]) -> list[asyncpg.Record]:
        """A query of the SQL written for both backends (store/sql.py)."""
        return await self._fetch(query, *params)

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        async def once() -> list[asyncpg.Record]:
            async with self._connection() as db:
                return list(await db.fetch(query, *args))

        return await _retried(self.location, once)

    async def _val(self, query: str, *args: object) -> Any:
        async def once() -> Any:
            async with self._connection() as db:
                return await db.fetchval(query, *args)

        return await _retried(self.location, once)

    async def _execute(self, query: str, *args: object) -> str:
        async def once() -> str:
            async with self._connection() as db:
                return str(await db.execute(query, *args))

        return await _retried(self.location, once)


def _in(db: Db) -> sql.Fetch:
    """Queries of store/sql.py, run in the transaction under way on `db`."""

    async def fetch(query: str, params: Sequence[Any]) -> list[asyncpg.Record]:
        return list(await db.fetch(query, *params))

    return fetch


async def _retried(location: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """`attempt()`, run again when PostgreSQL broke a deadlock by failing it: statements of
    two processes can wait on host rows the other holds (a lease taken over while its old
    holder renews it), and PostgreSQL cancels one of them."""
    for tries in range(5):
        try:
            return await attempt()
        except _RETRY as exc:
            if tries == 4:
                raise StoreError(f"store {location}: {exc}") from exc
            log.debug("retried after %s", exc)
    raise AssertionError("unreachable")


async def _keep_session(connection: asyncpg.Connection) -> None:
    """A connection goes back to the pool as it is: the store leaves no session state on its
    pooled connections (advisory locks are transaction-scoped there; the claims connection
    unlocks its own), so asyncpg's reset (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL: a
    round trip) is spared on every release, a fifth of all statements. A transaction left open
    (a commit cancelled midway) is rolled back."""
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


async def _connect(
    dsn: str,
    schema: str,
    size: int = 4,
    logger: Callable[[object], None] | None = None,
    idle: float = 60.0,
) -> asyncpg.Pool:
    """A small pool of connections whose tables are the crawl's schema (`logger` hears of
    every statement sent)."""

    async def init(connection: asyncpg.Connection) -> None:
        if logger is not None:
            connection.add_query_logger(logger)

    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=size,
            server_settings={
                "search_path": f'"{schema}"',
                "idle_in_transaction_session_timeout": f"{int(idle * 1000)}ms",
                "synchronous_commit": "off",
            },
            timeout=10,
            init=init,
            reset=_keep_session,
        )
    except (TimeoutError, asyncpg.PostgresError, OSError, ValueError) as exc:
        raise ConfigError(f"cannot open the PostgreSQL store {safe_dsn(dsn)}: {exc}") from None
    assert pool is not None
    return pool


def _fence_args(
    fences: Sequence[tuple[str, int]], states: Mapping[str, HostState]
) -> tuple[list[Any], ...]:
    """The arrays of _FENCE_COLUMNS for `fences` (host, fence), with the hosts' `states`."""
    kept = [states.get(host) for host, _ in fences]
    return (
        [host for host, _ in fences],
        [fence for _, fence in fences],
        [state is not None for state in kept],
        [state.not_before if state else 0.0 for state in kept],
        [state.failures if state else 0 for state in kept],
        [state.opens if state else 0 for state in kept],
        [state.open_until if state else 0.0 for state in kept],
        [state.silent_since if state else None for state in kept],
    )


def _close_args(pages: Sequence[Outcome], now: float) -> tuple[Any, ...]:
    """The arrays of _PAGE_COLUMNS for the outcomes `pages`, and the time `now`."""
    return (
        [o.request.id for o in pages],
        [int(o.state) for o in pages],
        [o.attempts for o in pages],
        [o.not_before for o in pages],
        [o.status for o in pages],
        [o.error for o in pages],
        [o.message for o in pages],
        [o.latency for o in pages],
        [o.size for o in pages],
        [o.etag for o in pages],
        [o.last_modified for o in pages],
        [revisit_mark(o) for o in pages],
        now,
    )
