"""SQL that both SQL backends run, written once: each supplies its dialect pieces (how a query
names its parameters, how it takes a list, how a number is cut to an integer) and a function
that runs a query (on its connection, or in the transaction under way).

What is here works on the requests and items tables, whose columns both schemas share; the
spider's policy it applies (redirects, sitemaps) is asked of store/shared.py.

What each backend keeps in its own SQL is where their algorithms differ, not their dialects:
the schema and its migrations, and the write path (inserting requests, leasing, committing,
releasing, failing a host, requeueing, a redirect's claim, items since a bookmark). SQLite has
one writer and keeps its per-host totals with triggers; PostgreSQL has many, so it keeps them
as per-process rows it adds to explicitly (no hot row to contend on), fences every commit
against lost host leases, and commits a batch of plain pages in one plpgsql call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..records import (
    LATENCY_BOUNDS,
    UNCHANGED_BY_SITEMAP,
    Counts,
    FileRecord,
    HostState,
    Outcome,
    Summary,
    WorkerInfo,
    duplicate_dict,
    failure_dict,
    host_summaries,
)
from .shared import REDIRECTED, REPLACING, bucket_seconds, count_unchanged, sitemap_dated
from .shared import unchanged_by_sitemap as sitemap_policy

#: Runs a query with its parameters; the rows.
Fetch = Callable[[str, Sequence[Any]], Awaitable[Sequence[Any]]]


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the backends' SQL."""

    #: The n-th (from 1) parameter of a query, and the same for a text that may be NULL.
    placeholder: Callable[[int], str]
    text: Callable[[int], str]
    #: `IN` a list of `count` texts from the n-th parameter on, and the parameters for it.
    among: Callable[[int, int], str]
    among_args: Callable[[Sequence[str]], tuple[Any, ...]]
    #: Most list items one statement takes.
    chunk: int
    #: The integer part of a non-negative number.
    integer: Callable[[str], str]

    def chunks(self, values: Sequence[str]) -> Iterator[Sequence[str]]:
        for start in range(0, len(values), self.chunk):
            yield values[start : start + self.chunk]


SQLITE = Dialect(
    placeholder=lambda n: f"?{n}",
    text=lambda n: f"?{n}",
    among=lambda n, count: f"IN ({', '.join(f'?{n + i}' for i in range(count))})",
    among_args=tuple,
    chunk=500,  # (SQLite caps a statement's parameters)
    integer=lambda x: f"CAST({x} AS INTEGER)",
)
POSTGRES = Dialect(
    placeholder=lambda n: f"${n}",
    text=lambda n: f"${n}::text",
    among=lambda n, count: f"= ANY(${n}::text[])",
    among_args=lambda values: (list(values),),
    chunk=100_000,
    integer=lambda x: f"floor({x})::int",
)


class Statements:
    """The statements both SQL backends run as they are, in one dialect (portable SQL: the
    upserts are SQLite's and PostgreSQL's common ON CONFLICT form)."""

    def __init__(self, d: Dialect) -> None:
        p1, p2, p3 = d.placeholder(1), d.placeholder(2), d.placeholder(3)
        self.next_due = f"SELECT MIN(not_before) FROM requests WHERE state = 0 AND host = {p1}"
        self.jars = "SELECT name, cookies FROM sessions"
        self.keep_jar = (
            f"INSERT INTO sessions (name, cookies) VALUES ({p1}, {p2})"
            " ON CONFLICT (name) DO UPDATE SET cookies = excluded.cookies"
        )
        self.robots_get = f"SELECT fetched_at, body FROM robots WHERE origin = {p1}"
        self.robots_put = (
            f"INSERT INTO robots (origin, fetched_at, body) VALUES ({p1}, {p2}, {p3})"
            " ON CONFLICT (origin) DO UPDATE SET fetched_at = excluded.fetched_at,"
            " body = excluded.body"
        )
        #: Bookmarks (key "mark:NAME"): read, keep, set if missing, move from a value.
        self.get_mark = f"SELECT value FROM meta WHERE key = {p1}"
        self.keep_mark = (
            f"INSERT INTO meta (key, value) VALUES ({p1}, {p2})"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )
        self.new_mark = (
            f"INSERT INTO meta (key, value) VALUES ({p1}, {p2}) ON CONFLICT (key) DO NOTHING"
        )
        self.move_mark = f"UPDATE meta SET value = {p3} WHERE key = {p1} AND value = {p2}"
        #: A page's fingerprint (settings.duplicates), kept or replaced; forgotten.
        self.keep_fingerprint = (
            "INSERT INTO fingerprints (request_id, url, body_hash, signature, duplicate_of,"
            f" exact) VALUES ({p1}, {p2}, {p3}, {d.placeholder(4)}, {d.placeholder(5)},"
            f" {d.placeholder(6)}) ON CONFLICT (request_id) DO UPDATE SET url = excluded.url,"
            " body_hash = excluded.body_hash, signature = excluded.signature,"
            " duplicate_of = excluded.duplicate_of, exact = excluded.exact"
        )
        self.forget_fingerprint = f"DELETE FROM fingerprints WHERE request_id = {p1}"
        #: A file stored whole (settings.files_store), by its URL.
        self.keep_file = (
            f"INSERT INTO files (url, path, checksum, size, content_type) VALUES ({p1}, {p2},"
            f" {p3}, {d.placeholder(4)}, {d.placeholder(5)}) ON CONFLICT (url) DO UPDATE SET"
            " path = excluded.path, checksum = excluded.checksum, size = excluded.size,"
            " content_type = excluded.content_type"
        )
        #: A new revisit: what the last one changed is no longer news.
        self.old_news = "UPDATE requests SET revisit = 0 WHERE revisit = 2"
        self._d = d

    def taken(self, count: int) -> str:
        """Which of `count` identities are leased, done or failed."""
        return (
            "SELECT COALESCE(key, url) FROM requests"
            f" WHERE COALESCE(key, url) {self._d.among(1, count)} AND state > 0"
        )


def stale(d: Dialect) -> str:
    """Pages a revisit fetches again: done before a time (the first parameter), and crawled
    under their own URL (a redirect's final URL is revisited through that redirect)."""
    return f"state = 2 AND updated < {d.placeholder(1)} AND COALESCE(message, '') <> '{REDIRECTED}'"


async def failures(
    fetch: Fetch, d: Dialect, host: str | None, error: str | None
) -> AsyncIterator[dict[str, Any]]:
    """Failed rows (of `host`, of error kind `error`) as dicts: url, error, status, attempts,
    message (and method, when not GET); in the order they were discovered."""
    p1, p2, p3 = d.placeholder(1), d.text(2), d.text(3)
    query = (
        "SELECT id, url, error, status, attempts, message, method FROM requests"
        f" WHERE state = 3 AND id > {p1} AND ({p2} IS NULL OR host = {p2})"
        f" AND ({p3} IS NULL OR error = {p3}) ORDER BY id LIMIT 1000"
    )
    last = 0
    while rows := await fetch(query, (last, host, error)):
        for _, *failure in rows:
            yield failure_dict(*failure)
        last = rows[-1][0]


def fingerprint_rows(
    committed: Sequence[Outcome],
) -> tuple[list[tuple[int]], list[tuple[int, str, bytes, bytes | None, str | None, bool]]]:
    """What a commit does to the fingerprints table: the rows to forget (a revisit's that
    replaced its page's items), then the rows to keep (Statements.forget_fingerprint and
    keep_fingerprint)."""
    forget = [(o.request.id,) for o in committed if not o.lost and o.revisit in REPLACING]
    keep = [
        (o.request.id, f.url, f.body_hash, f.signature, f.duplicate_of, f.exact)
        for o in committed
        if not o.lost and (f := o.fingerprint) is not None
    ]
    return forget, keep


def file_rows(committed: Sequence[Outcome]) -> list[tuple[str, str, str, int, str | None]]:
    """The files a commit keeps (Statements.keep_file), each once."""
    rows = {
        f.url: (f.url, f.path, f.checksum, f.size, f.content_type)
        for o in committed
        if not o.lost and o.files
        for f in o.files
    }
    return [rows[url] for url in sorted(rows)]


async def files_known(fetch: Fetch, d: Dialect, urls: Sequence[str]) -> dict[str, FileRecord]:
    """The kept files of these URLs."""
    found: dict[str, FileRecord] = {}
    for chunk in d.chunks(sorted(set(urls))):
        rows = await fetch(
            "SELECT url, path, checksum, size, content_type FROM files"
            f" WHERE url {d.among(1, len(chunk))}",
            d.among_args(chunk),
        )
        for row in rows:
            found[row[0]] = FileRecord(*row)
    return found


def fingerprint_row(url: str, body: Any, signature: Any) -> tuple[str, bytes, bytes | None]:
    """A kept fingerprint as the stores give it (BLOBs and bytea as bytes)."""
    return url, bytes(body), None if signature is None else bytes(signature)


async def duplicates(fetch: Fetch, d: Dialect) -> AsyncIterator[dict[str, Any]]:
    """The pages that duplicate one crawled before, as records.duplicate_dict, in request
    order."""
    query = (
        "SELECT request_id, url, duplicate_of, exact FROM fingerprints"
        f" WHERE request_id > {d.placeholder(1)} AND duplicate_of IS NOT NULL"
        " ORDER BY request_id LIMIT 1000"
    )
    async for _, url, duplicate_of, exact in _by_id(fetch, query):
        yield duplicate_dict(url, duplicate_of, bool(exact))


async def changed_items(fetch: Fetch, d: Dialect) -> AsyncIterator[str]:
    """The items of the pages the last revisit found changed, in commit order."""
    query = (
        "SELECT items.id, items.data FROM items JOIN requests ON requests.id = items.request_id"
        f" WHERE items.id > {d.placeholder(1)} AND requests.revisit = 2"
        " ORDER BY items.id LIMIT 1000"
    )
    async for row in _by_id(fetch, query):
        yield row[1]


def callback_in_use(d: Dialect) -> str:
    """Whether a queued or leased row names the callback or errback (the first parameter)."""
    p1 = d.placeholder(1)
    return (
        f"SELECT 1 FROM requests WHERE (callback = {p1} OR errback = {p1}) AND state <= 1 LIMIT 1"
    )


async def mark_unchanged_by_sitemap(
    fetch: Fetch, d: Dialect, outcome: Outcome, now: float
) -> list[str]:
    """Mark done, as unchanged, the queued revisits a sitemap (this outcome's page) says have
    not changed since their page was last fetched (shared.unchanged_by_sitemap), and count
    them on the outcome; the host of each. Run in the commit's transaction."""
    dated = sitemap_dated(outcome.links)
    if not dated:
        return []
    fetched: dict[str, float | None] = {}
    for chunk in d.chunks(dated):
        rows = await fetch(
            "SELECT COALESCE(key, url), updated FROM requests WHERE state = 0 AND revisit = 1"
            f" AND COALESCE(key, url) {d.among(1, len(chunk))}",
            d.among_args(chunk),
        )
        fetched.update((identity, updated) for identity, updated in rows)
    hosts: list[str] = []
    for chunk in d.chunks(sitemap_policy(outcome.links, fetched)):
        rows = await fetch(
            f"UPDATE requests SET state = 2, revisit = 0, updated = {d.placeholder(1)},"
            f" message = '{UNCHANGED_BY_SITEMAP}' WHERE state = 0 AND revisit = 1"
            f" AND COALESCE(key, url) {d.among(2, len(chunk))} RETURNING host",
            (now, *d.among_args(chunk)),
        )
        hosts += [host for (host,) in rows]
    count_unchanged(outcome, len(hosts))
    return hosts


_FINISHED = "state >= 2"


async def summary(
    fetch: Fetch,
    dialect: Dialect,
    *,
    counts: Counts,
    totals: dict[str, Counts],
    politeness: Sequence[HostState],
    counters: dict[str, int],
    workers: list[WorkerInfo],
) -> Summary:
    """The crawl's summary from its rows (reads every row: seconds for millions), with what
    the store keeps beside them: its `counts`, per-host `totals`, `politeness` states,
    `counters` and `workers`."""
    measured = {
        host: (int(size), mean, top)
        for host, size, mean, top in await fetch(
            "SELECT host, COALESCE(SUM(size), 0), AVG(latency), MAX(latency) FROM requests"
            f" WHERE {_FINISHED} GROUP BY host",
            (),
        )
    }
    hosts = host_summaries(totals, measured, {state.host: state for state in politeness})
    cases = " ".join(f"WHEN latency < {b} THEN {i}" for i, b in enumerate(LATENCY_BOUNDS))
    histogram = await _grouped(
        fetch,
        f"SELECT CASE {cases} ELSE {len(LATENCY_BOUNDS)} END, COUNT(*) FROM requests"
        " WHERE latency IS NOT NULL GROUP BY 1",
    )
    ((first, last),) = await fetch(
        f"SELECT MIN(updated), MAX(updated) FROM requests WHERE {_FINISHED}", ()
    )
    bucket = bucket_seconds((last or 0) - (first or 0))
    p1, p2 = dialect.placeholder(1), dialect.placeholder(2)
    timeline = [
        (first + n * bucket, int(done), int(failed))
        for n, done, failed in await fetch(
            f"SELECT {dialect.integer(f'(updated - {p1}) / {p2}')},"
            " SUM(CASE WHEN state = 2 THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN state = 3 THEN 1 ELSE 0 END) FROM requests"
            # rows failed as they were found (a trap, an invalid URL) were never updated
            f" WHERE {_FINISHED} AND updated IS NOT NULL GROUP BY 1 ORDER BY 1",
            (first or 0.0, bucket),
        )
    ]
    return Summary(
        counts=counts,
        hosts=hosts,
        statuses=await _grouped(
            fetch,
            "SELECT status, COUNT(*) FROM requests WHERE status IS NOT NULL"
            f" AND {_FINISHED} GROUP BY status ORDER BY status",
        ),
        errors=await _grouped(
            fetch,
            "SELECT error, COUNT(*) FROM requests WHERE state = 3"
            " GROUP BY error ORDER BY 2 DESC, 1",
        ),
        depths=await _grouped(
            fetch,
            f"SELECT depth, COUNT(*) FROM requests WHERE {_FINISHED} GROUP BY depth ORDER BY depth",
        ),
        latencies=[histogram.get(i, 0) for i in range(len(LATENCY_BOUNDS) + 1)],
        timeline=timeline,
        bucket=bucket,
        first=first,
        last=last,
        bytes=sum(h.bytes for h in hosts),
        workers=workers,
        counters=counters,
    )


async def _grouped(fetch: Fetch, sql: str) -> dict[Any, int]:
    return {key: int(n) for key, n in await fetch(sql, ())}


SQLITE_SQL = Statements(SQLITE)
POSTGRES_SQL = Statements(POSTGRES)


async def _by_id(fetch: Fetch, query: str) -> AsyncIterator[Sequence[Any]]:
    """The rows of `query`, page by page in the order of their first column (an id), which
    its one parameter takes from the last row of the page before (keyset pagination)."""
    last = 0
    while rows := await fetch(query, (last,)):
        for row in rows:
            yield row
        last = rows[-1][0]
