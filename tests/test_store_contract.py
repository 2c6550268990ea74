"""The Store protocol, held against every backend: in memory (the reference implementation),
SQLite (a file, one process) and PostgreSQL (shared by many processes). Another backend passes
these tests to be a store.

The PostgreSQL cases need a server (CRAWLER_TEST_POSTGRES, default the project machines' one):
in CI an unreachable server fails them, elsewhere they are skipped."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from crawler import ConfigError
from crawler.records import (
    STATE_MARK,
    ErrorKind,
    FileRecord,
    Fingerprint,
    HostState,
    NewRequest,
    Outcome,
    Revisit,
    State,
)
from crawler.store import Store, open_store
from crawler.store.memory import MemoryDatabase, MemoryStore
from crawler.store.postgres import PostgresStore, schema_name
from tests.conftest import drop_schema
from tests.helpers import fetched_per_host

Opener = Callable[..., Awaitable[Store]]


def req(path: str, host: str = "a.com", priority: int = 0, **kw: object) -> NewRequest:
    return NewRequest(url=f"http://{host}{path}", host=host, priority=priority, **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens the store of one crawl on the backend under test (each call: a new process's
    view of it, as far as a store can tell)."""
    opened: list[Store] = []
    if request.param == "memory":  # the reference implementation
        database = MemoryDatabase()

        async def open_memory(*, fresh: bool = False, lease_ttl: float = 30.0) -> Store:
            store = await MemoryStore.open("s", database=database, fresh=fresh)
            opened.append(store)
            return store

        yield open_memory
        for store in opened:
            await store.close()
        return
    if request.param == "sqlite":
        location = str(tmp_path / "crawl.db")
        spider = "s"
    else:
        location = request.getfixturevalue("postgres_dsn")
        spider = request.getfixturevalue("pg_spider")

    async def open_(*, fresh: bool = False, lease_ttl: float = 30.0) -> Store:
        store = await open_store(location, spider, fresh=fresh, lease_ttl=lease_ttl)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


async def test_add_ignores_known_requests_and_lease_orders_by_priority(opener: Opener) -> None:
    store = await opener()
    await store.add([req("/1"), req("/2", priority=5), req("/3"), req("/x", host="b.com")])
    await store.add([req("/1"), req("/2"), req("/1", key="POST http://a.com/1", method="POST")])
    leases = await store.acquire_hosts(10, None)
    assert sorted(lease.host for lease in leases) == ["a.com", "b.com"]
    leased = await store.lease("a.com", 2, now=1.0)
    assert [r.url for r in leased] == ["http://a.com/2", "http://a.com/1"]
    rest = await store.lease("a.com", 5, now=1.0)
    assert sorted((r.url, r.method) for r in rest) == [
        ("http://a.com/1", "POST"),
        ("http://a.com/3", None),
    ]
    assert await store.lease("a.com", 5, now=1.0) == []
    assert (await store.counts()).pending == 5


async def test_commit_is_one_unit_with_items_links_and_retries(opener: Opener) -> None:
    store = await opener()
    await store.add([req("/1"), req("/2")])
    await store.acquire_hosts(10, None)
    one, two = await store.lease("a.com", 2, now=1.0)
    committed = await store.commit(
        [
            Outcome(
                one,
                State.DONE,
                1,
                status=200,
                items=['{"n": 1}', '{"n": 2}'],
                links=[req("/2"), req("/3", host="c.com")],
                latency=0.1,
            ),
            Outcome(two, State.QUEUED, 1, error=ErrorKind.TIMEOUT, not_before=50.0),
        ]
    )
    assert [o.lost for o in committed] == [False, False]
    assert [i async for i in store.items()] == ['{"n": 1}', '{"n": 2}']
    counts = await store.counts()
    assert (counts.done, counts.pending, counts.items, counts.fetched) == (1, 2, 2, 1)
    assert await store.lease("a.com", 5, now=10.0) == []  # the retry is not due yet
    assert await store.next_due("a.com") == 50.0
    assert [r.attempts for r in await store.lease("a.com", 5, now=50.0)] == [1]
    totals = await store.host_totals()
    assert (totals["a.com"].done, totals["c.com"].pending) == (1, 1)
    assert await fetched_per_host(store) == {"a.com": 1}


async def test_cancelled_commit_leaves_nothing_behind(opener: Opener) -> None:
    store = await opener()
    await store.add([req("/1")])
    await store.acquire_hosts(10, None)
    (one,) = await store.lease("a.com", 1, now=1.0)
    task = asyncio.create_task(
        store.commit([Outcome(one, State.DONE, 1, items=['{"a": 1}'], links=[req("/9")])])
    )
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    counts = await store.counts()
    assert (counts.items, counts.done, counts.pending) == (0, 0, 1)


async def test_released_and_abandoned_leases_are_queued_again(opener: Opener) -> None:
    store = await opener()
    await store.add([req("/1"), req("/2")])
    await store.acquire_hosts(10, None)
    await store.lease("a.com", 1, now=1.0)
    assert await store.release() == 1
    assert len(await store.lease("a.com", 2, now=1.0)) == 2
    await store.close()  # as if the process died holding two leased rows
    again = await opener()
    (lease,) = await again.acquire_hosts(10, None)
    assert len(await again.lease(lease.host, 5, now=1.0)) == 2


async def test_a_redirect_claims_its_final_url_once(opener: Opener) -> None:
    store = await opener()
    await store.add([req("/a"), req("/b"), req("/final")])
    await store.acquire_hosts(10, None)
    a, b, final = await store.lease("a.com", 3, now=1.0)
    await store.release([final.id])
    to = ("http://a.com/final", "a.com")
    assert await store.taken(["http://a.com/final", "http://a.com/b"]) == {"http://a.com/b"}
    (first,) = await store.commit([Outcome(a, State.DONE, 1, items=["1"], final_url=to)])
    assert await store.taken(["http://a.com/final", "http://a.com/x"]) == {"http://a.com/final"}
    (second,) = await store.commit([Outcome(b, State.DONE, 1, items=["2"], final_url=to)])
    assert (first.items, second.items) == (["1"], [])
    assert "crawled on its own" in (second.message or "")
    assert [i async for i in store.items()] == ["1"]
    counts = await store.counts()
    assert (counts.done, counts.pending) == (3, 0)


async def test_failing_a_host_and_retrying_failures(opener: Opener) -> None:
    store = await opener()
    await store.add([req("/1"), req("/2"), req("/3"), req("/t", error=ErrorKind.TRAP)])
    await store.acquire_hosts(10, None)
    (one,) = await store.lease("a.com", 1, now=1.0)
    failed = await store.fail_host(
        "a.com", [one.id], error=ErrorKind.HOST_UNAVAILABLE, message="gone"
    )
    assert failed == 3
    listed = [f async for f in store.failures()]  # type: ignore[attr-defined]
    assert sorted(f["error"] for f in listed) == ["host_unavailable"] * 3 + ["trap"]
    await store.commit([], [HostState("a.com", 5.0, 3, 2, math.inf)])
    assert await store.requeue_failed(error=ErrorKind.HOST_UNAVAILABLE) == 3
    counts = await store.counts()
    assert (counts.pending, counts.failed) == (3, 1)
    assert await store.host_states() == [] or all(
        s.open_until == 0 for s in await store.host_states()
    )


async def test_host_states_robots_cookies_and_marks_are_kept(opener: Opener) -> None:
    store = await opener()
    await store.add([req("/1")])
    await store.acquire_hosts(10, None)
    (one,) = await store.lease("a.com", 1, now=1.0)
    state = HostState("a.com", 7.5, 4, 1, 99.0, silent_since=42.0)
    await store.commit([Outcome(one, State.DONE, 1, jars={"alice": "[]"})], [state])
    await store.robots_put("http://a.com", 3.0, "User-agent: *\nDisallow: /x")
    await store.robots_put("http://b.com", 4.0, None)
    assert await store.move_mark("out", None, "12")
    await store.close()
    again = await opener()
    assert await again.host_states() == [state]
    if again.shared:  # the next holder of the host inherits its health with the lease
        await again.add([req("/2")])
        (lease,) = await again.acquire_hosts(10, None)
        assert lease.state == state
    assert await again.robots_get("http://a.com") == (3.0, "User-agent: *\nDisallow: /x")
    assert await again.robots_get("http://b.com") == (4.0, None)
    assert await again.robots_get("http://c.com") is None
    assert await again.jars() == {"alice": "[]"}
    assert await again.get_mark("out") == "12"
    assert await again.get_mark("other") is None
    # a bookmark moves only from where its mover last saw it
    assert await again.move_mark("sink", None, "a")
    assert not await again.move_mark("sink", None, "b")
    assert not await again.move_mark("sink", "b", "c")
    assert await again.move_mark("sink", "a", "c")
    assert await again.get_mark("sink") == "c"


async def test_summary_and_pending_callbacks(opener: Opener) -> None:
    store = await opener()
    await store.add([req("/1", callback="parse_item"), req("/2", errback="on_error")])
    await store.acquire_hosts(10, None)
    one, two = await store.lease("a.com", 2, now=1.0)
    await store.commit(
        [
            Outcome(one, State.DONE, 1, status=200, items=["{}"], latency=0.2, size=10),
            Outcome(two, State.FAILED, 1, status=404, error=ErrorKind.HTTP_STATUS, latency=0.1),
        ]
    )
    summary = await store.summary()  # type: ignore[attr-defined]
    assert (summary.counts.done, summary.counts.failed, summary.counts.items) == (1, 1, 1)
    assert summary.statuses == {200: 1, 404: 1}
    assert summary.errors == {"http_status": 1}
    assert summary.bytes == 10
    assert sum(summary.latencies) == 2
    await store.add([req("/3", callback="gone")])
    assert await store.callbacks_pending(known=lambda name: name == "parse") == {"gone"}


async def test_summary_of_a_crawl_with_urls_failed_as_found(opener: Opener) -> None:
    # a trap or an invalid URL is failed as it is found, with no time of its own: the summary
    # (crawler stats, report) counts it and leaves it off the timeline
    store = await opener()
    await store.add([req("/1"), req("/t", error=ErrorKind.TRAP), req("/x", host="b.com")])
    await store.acquire_hosts(10, None)
    (one,) = await store.lease("a.com", 5, now=1.0)
    await store.commit([Outcome(one, State.DONE, 1, status=200, latency=0.2, size=10)])
    summary = await store.summary()
    assert summary.errors == {"trap": 1}
    assert [(done, failed) for _, done, failed in summary.timeline] == [(1, 0)]
    assert summary.first is not None
    assert summary.first == summary.last
    assert [(h.host, h.done, h.failed, h.queued) for h in summary.hosts] == [
        ("a.com", 1, 1, 0),
        ("b.com", 0, 0, 1),
    ]
    assert (summary.statuses, summary.depths, summary.bytes) == ({200: 1}, {0: 2}, 10)


async def test_page_grants_and_the_end_of_the_crawl(opener: Opener) -> None:
    store = await opener()
    await store.add([req(f"/{n}") for n in range(5)])
    assert not await store.crawl_done(None, None)
    assert await store.grant_pages(3, max_pages=4) == 3
    (lease,) = await store.acquire_hosts(10, None)
    rows = await store.lease(lease.host, 5, now=1.0)
    await store.commit([Outcome(r, State.DONE, 1, latency=0.1) for r in rows[:4]])
    assert await store.crawl_done(None, 4)  # max_pages fetched
    assert not await store.crawl_done(None, None)
    assert await store.crawl_done(4, None)  # the only host's budget is spent
    await store.commit([Outcome(rows[4], State.DONE, 1, latency=0.1)])
    assert await store.crawl_done(None, None)


# -- a shared store: leases and fencing (PostgreSQL) ----------------------------------------


async def test_revisits_keep_replace_or_remove_a_pages_items(opener: Opener) -> None:
    store = await opener()
    await store.add([req("/same"), req("/new"), req("/gone"), req("/young")])
    await store.acquire_hosts(10, None)
    leased = {r.url.rsplit("/", 1)[1]: r for r in await store.lease("a.com", 4, now=1.0)}
    same, new, gone = leased["same"], leased["new"], leased["gone"]
    await store.commit(
        [
            Outcome(same, State.DONE, 1, items=['"s"'], etag='"e1"', latency=0.1),
            Outcome(new, State.DONE, 1, items=['"n1"', '"n2"'], last_modified="Mon", latency=0.1),
            Outcome(gone, State.DONE, 1, items=['"g"'], latency=0.1),
        ]
    )
    cutoff = time.time() + 1  # (young stays leased: not done, so not revisited)
    assert await store.requeue_stale(cutoff) == 3
    assert (await store.counts()).pending == 4
    await store.acquire_hosts(10, None)
    again = {r.url.rsplit("/", 1)[1]: r for r in await store.lease("a.com", 10, now=1.0)}
    assert again["same"].revisit
    assert (again["same"].etag, again["new"].last_modified) == ('"e1"', "Mon")
    await store.commit(
        [
            Outcome(again["same"], State.DONE, 1, status=304, revisit=Revisit.UNCHANGED),
            Outcome(again["new"], State.DONE, 1, items=['"n3"'], revisit=Revisit.CHANGED),
            Outcome(
                again["gone"],
                State.FAILED,
                1,
                status=404,
                error=ErrorKind.HTTP_STATUS,
                revisit=Revisit.GONE,
            ),
        ]
    )
    assert sorted([i async for i in store.items()]) == ['"n3"', '"s"']
    assert [i async for i in store.changed_items()] == ['"n3"']
    counts = await store.counts()
    assert (counts.done, counts.failed, counts.items) == (2, 1, 2)
    assert (await store.host_totals())["a.com"].items == 2
    assert await store.requeue_stale(0.0) == 0  # nothing done that long ago
    assert [i async for i in store.changed_items()] == []  # a new revisit: old news


async def kept_fingerprints(store: Store) -> list[tuple[str, bytes, bytes | None]]:
    """Every fingerprint the store gives, read a page of two at a time."""
    found, cursor = [], None
    while True:
        rows, cursor = await store.fingerprints_since(cursor, 2)
        if not rows:
            return found
        found += rows


async def test_fingerprints_are_kept_with_their_pages(opener: Opener) -> None:
    store = await opener()
    await store.add([req(f"/{n}") for n in range(5)])
    await store.acquire_hosts(10, None)
    rows = await store.lease("a.com", 5, now=1.0)
    sig = bytes(range(256))
    prints = [
        Fingerprint("http://a.com/0", b"h0" * 8, sig),
        Fingerprint("http://a.com/1", b"h0" * 8, None, "http://a.com/0", exact=True),
        Fingerprint("http://a.com/2", b"h2" * 8, sig, "http://a.com/0"),
        Fingerprint("http://a.com/3", b"h3" * 8, None),  # not HTML: a body hash only
    ]
    # in two commits, the second with a redirect that is crawled on its own: no fingerprint
    await store.commit(
        [
            Outcome(r, State.DONE, 1, fingerprint=f)
            for r, f in zip(rows[:2], prints[:2], strict=True)
        ]
    )
    to = ("http://a.com/0", "a.com")
    await store.commit(
        [
            *[
                Outcome(r, State.DONE, 1, fingerprint=f)
                for r, f in zip(rows[2:4], prints[2:], strict=True)
            ],
            Outcome(
                rows[4], State.DONE, 1, final_url=to, fingerprint=Fingerprint(to[0], b"x" * 16)
            ),
        ]
    )
    assert await kept_fingerprints(store) == [
        ("http://a.com/0", b"h0" * 8, sig),
        ("http://a.com/3", b"h3" * 8, None),
    ]
    assert [d async for d in store.duplicates()] == [
        {"url": "http://a.com/1", "duplicate_of": "http://a.com/0", "kind": "exact"},
        {"url": "http://a.com/2", "duplicate_of": "http://a.com/0", "kind": "near"},
    ]
    await store.close()
    reopened = await opener()  # what a resumed crawl rebuilds its index from
    assert len(await kept_fingerprints(reopened)) == 2
    # a revisit that finds the page changed replaces its fingerprint; gone removes it
    assert await reopened.requeue_stale(time.time() + 1) == 5
    await reopened.acquire_hosts(10, None)
    again = {r.url: r for r in await reopened.lease("a.com", 10, now=1.0)}
    await reopened.commit(
        [
            Outcome(
                again["http://a.com/0"],
                State.DONE,
                1,
                revisit=Revisit.CHANGED,
                fingerprint=Fingerprint("http://a.com/0", b"n0" * 8, sig),
            ),
            Outcome(
                again["http://a.com/3"],
                State.FAILED,
                1,
                status=404,
                error=ErrorKind.HTTP_STATUS,
                revisit=Revisit.GONE,
            ),
        ]
    )
    assert await kept_fingerprints(reopened) == [("http://a.com/0", b"n0" * 8, sig)]


async def test_files_are_kept_with_the_pages_that_name_them(opener: Opener) -> None:
    store = await opener()
    await store.add([req("/1"), req("/2"), req("/3")])
    await store.acquire_hosts(10, None)
    one, two, three = await store.lease("a.com", 3, now=1.0)
    pdf = FileRecord(
        "http://f.com/a.pdf", "full/ab.pdf", "c" * 64, 5_000_000_000, "application/pdf"
    )
    png = FileRecord("http://f.com/b.png", "full/cd.png", "d" * 64, 10, None)
    assert await store.files_known([pdf.url]) == {}
    await store.commit(
        [
            Outcome(one, State.DONE, 1, items=["{}"], files=[pdf]),
            Outcome(two, State.DONE, 1, items=["{}"], files=[pdf, png]),  # named twice: kept once
            Outcome(three, State.QUEUED, 1, error=ErrorKind.TIMEOUT, not_before=9.0),
        ]
    )
    assert await store.files_known([pdf.url, png.url, "http://f.com/c"]) == {
        pdf.url: pdf,
        png.url: png,
    }


async def test_a_sitemaps_lastmod_marks_queued_revisits_unchanged(opener: Opener) -> None:
    store = await opener()
    await store.add([req("/map"), req("/old"), req("/new")])
    await store.acquire_hosts(10, None)
    leased = {r.url.rsplit("/", 1)[1]: r for r in await store.lease("a.com", 3, now=1.0)}
    await store.commit(
        [Outcome(r, State.DONE, 1, items=[f'"{n}"'], latency=0.1) for n, r in leased.items()]
    )
    fetched = time.time()
    assert await store.requeue_stale(fetched + 1) == 3
    await store.acquire_hosts(10, None)
    (sitemap,) = await store.lease("a.com", 1, now=1.0)
    assert sitemap.url.endswith("/map")
    links = [
        NewRequest(url="http://a.com/old", host="a.com", lastmod=fetched - 86400),
        NewRequest(url="http://a.com/new", host="a.com", lastmod=fetched + 86400),
    ]
    (committed,) = await store.commit([Outcome(sitemap, State.DONE, 1, links=links)])
    assert committed.counters == {"revisit:unchanged": 1}
    assert (await store.counters())["revisit:unchanged"] == 1
    rest = await store.lease("a.com", 10, now=1.0)
    assert [r.url for r in rest] == ["http://a.com/new"]  # /old is done: no request for it
    counts = await store.counts()
    assert (counts.done, counts.pending) == (2, 1)  # the sitemap and /old; /new to go
    assert sorted([i async for i in store.items()]) == ['"map"', '"new"', '"old"']


async def test_state_counters_and_items_since_a_bookmark(opener: Opener) -> None:
    store = await opener()
    await store.add([req("/1"), req("/2"), req("/3")])
    await store.acquire_hosts(10, None)
    one, two, three = await store.lease("a.com", 3, now=1.0)
    await store.commit(
        [
            Outcome(one, State.DONE, 1, items=['{"n": 1}', '{"n": 2}'], counters={"stat:x": 2}),
            Outcome(two, State.FAILED, 1, error=ErrorKind.SPIDER, counters={"dropped:bad": 1}),
        ],
        state='{"seen": 1}',
        counters={"stat:x": 1, "stat:opened": 1},
    )
    assert await store.counters() == {"stat:x": 3, "stat:opened": 1, "dropped:bad": 1}
    assert await store.get_mark(STATE_MARK) == '{"seen": 1}'
    assert (await store.summary()).counters == await store.counters()
    rows, cursor = await store.items_since(None, 1)
    assert [text for _, text in rows] == ['{"n": 1}']
    rest, cursor = await store.items_since(cursor, 10)
    assert [text for _, text in rest] == ['{"n": 2}']
    assert await store.items_since(cursor, 10) == ([], cursor)
    assert await store.items_waiting(cursor) == 0
    # a commit of only state and counters (what the end of a run leaves) is one too
    await store.commit([], state='{"seen": 2}', counters={"stat:closed": 1})
    assert await store.get_mark(STATE_MARK) == '{"seen": 2}'
    assert (await store.counters())["stat:closed"] == 1
    await store.commit([Outcome(three, State.DONE, 1, items=['{"n": 3}'])])
    later, after = await store.items_since(cursor, 10)
    assert [text for _, text in later] == ['{"n": 3}']
    assert [item_id for item_id, _ in rows + rest] < [item_id for item_id, _ in later]
    await store.close()
    reopened = await opener()  # a resumed run (or another process) reads the same
    assert await reopened.items_since(cursor, 10) == (later, after)
    assert await reopened.get_mark(STATE_MARK) == '{"seen": 2}'


@pytest.fixture
async def shared(postgres_dsn: str, pg_spider: str) -> AsyncIterator[Opener]:
    opened: list[Store] = []

    async def open_(*, fresh: bool = False, lease_ttl: float = 30.0) -> Store:
        store = await PostgresStore.open(postgres_dsn, pg_spider, fresh=fresh, lease_ttl=lease_ttl)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


async def expire_leases(dsn: str, spider: str) -> None:
    """As if every lease had run out (a holder paused or cut off for longer than its TTL)."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'UPDATE "{schema_name(spider)}".hosts SET lease_until = 0')
    finally:
        await connection.close()


async def test_a_process_judges_pages_against_those_others_commit(shared: Opener) -> None:
    import httpx

    from crawler import Request, Response
    from crawler.fingerprints import body_hash
    from crawler.page.duplicates import Duplicates

    a, b = await shared(), await shared()
    index = Duplicates(0.9, nofollow=False, feed=a.fingerprints_since, every=0.0)
    await index.read(a.fingerprints_since)  # as a crawl starts: nothing yet
    body = b"<html><body><p>" + b" ".join(b"word%d" % n for n in range(200)) + b"</p></body></html>"
    await b.add([req("/x", host="b.com")])
    await b.acquire_hosts(10, None)
    (row,) = await b.lease("b.com", 1, now=1.0)
    seen = Fingerprint("http://b.com/x", body_hash(body), None)
    await b.commit([Outcome(row, State.DONE, 1, fingerprint=seen)])  # another process's page
    await index.catch_up()
    copy = Response(
        url="http://a.com/copy",
        status=200,
        headers=httpx.Headers({"content-type": "text/html"}),
        body=body,
        request=Request("http://a.com/copy"),
    )
    assert index.judge(copy).duplicate_of == "http://b.com/x"


async def test_one_holder_per_host(shared: Opener) -> None:
    a, b = await shared(), await shared()
    await a.add([req("/1"), req("/1", host="b.com"), req("/1", host="c.com")])
    first = await a.acquire_hosts(2, None)
    second = await b.acquire_hosts(5, None)
    assert len(first) == 2
    assert len(second) == 1
    assert {x.host for x in first} | {x.host for x in second} == {"a.com", "b.com", "c.com"}
    assert await a.acquire_hosts(5, None) == []  # nothing left: every host is held
    assert await b.lease(first[0].host, 5, now=1.0) == []  # not b's host


async def test_a_stale_holder_cannot_commit_over_the_new_one(
    shared: Opener, postgres_dsn: str, pg_spider: str
) -> None:
    a, b = await shared(), await shared()
    await a.add([req(f"/{n}") for n in range(3)])
    (lease_a,) = await a.acquire_hosts(5, None)
    rows = await a.lease("a.com", 3, now=1.0)
    await expire_leases(postgres_dsn, pg_spider)  # a is paused past its lease...
    (lease_b,) = await b.acquire_hosts(5, None)  # ...and b takes the host over
    assert lease_b.fence == lease_a.fence + 1
    again = await b.lease("a.com", 5, now=1.0)  # a's leased rows are b's now
    assert sorted(r.id for r in again) == sorted(r.id for r in rows)
    late = await a.commit([Outcome(r, State.DONE, 1, items=["a"]) for r in rows])
    assert all(o.lost and not o.items for o in late)
    assert [i async for i in a.items()] == []
    kept, _ = await a.heartbeat([("a.com", lease_a.fence)], 0, 0.0, False)
    assert kept == set()  # a learns it lost the host
    done = await b.commit([Outcome(r, State.DONE, 1, items=["b"]) for r in again])
    assert not any(o.lost for o in done)
    assert [i async for i in b.items()] == ["b"] * 3


async def test_heartbeats_keep_leases_and_share_hosts_with_hungry_workers(
    shared: Opener, postgres_dsn: str, pg_spider: str
) -> None:
    a, b = await shared(), await shared()
    await a.add([req("/1", host=f"h{n}.com") for n in range(6)])
    leases = await a.acquire_hosts(10, None)
    assert len(leases) == 6
    held = [(x.host, x.fence) for x in leases]
    kept, share = await a.heartbeat(held, 0, 0.0, False)
    assert kept == {x.host for x in leases}
    assert share is None
    await b.heartbeat([], 0, 0.0, True)  # b has nothing and says so
    _, share = await a.heartbeat(held, 0, 0.0, False)
    assert share == 3
    await a.release_hosts([(host, fence, 2.0) for host, fence in held[3:]])
    taken = await b.acquire_hosts(10, None)
    assert len(taken) == 3
    assert all(1.0 < x.start_in <= 2.0 for x in taken)
    assert not [w for w in await a.workers() if not w.alive]


async def test_fresh_is_refused_while_another_process_crawls(shared: Opener) -> None:
    await shared()
    with pytest.raises(ConfigError, match="--fresh refused"):
        await shared(fresh=True)


async def test_a_bookmark_never_skips_an_item_committed_late(
    shared: Opener, postgres_dsn: str, pg_spider: str
) -> None:
    """Ids are handed out when items are inserted, not when they commit: an item with a lower
    id may commit after one with a higher id. The bookmark waits for it."""
    store = await shared()
    await store.add([req("/1")])
    await store.acquire_hosts(10, None)
    (one,) = await store.lease("a.com", 1, now=1.0)
    schema = schema_name(pg_spider)
    late = await asyncpg.connect(postgres_dsn)
    try:
        transaction = late.transaction()
        await transaction.start()
        await late.execute(
            f'INSERT INTO "{schema}".items (request_id, data) VALUES (0, \'{{"late": 1}}\')'
        )
        await store.commit([Outcome(one, State.DONE, 1, items=['{"early": 1}'])])
        # the early item commits first, but its transaction is younger than the open one
        assert await store.items_since(None, 10) == ([], None)
        assert await store.items_waiting(None) == 1  # (the late one is not committed yet)
        await transaction.commit()
    finally:
        await late.close()
    rows, cursor = await store.items_since(None, 10)
    assert [text for _, text in rows] == ['{"late": 1}', '{"early": 1}']
    assert rows[0][0] < rows[1][0]
    assert await store.items_waiting(cursor) == 0


async def test_one_process_at_a_time_feeds_a_sink(shared: Opener) -> None:
    a, b = await shared(), await shared()
    assert await a.claim("sink:x")
    assert await a.claim("sink:x")  # still its own
    assert not await b.claim("sink:x")
    assert await b.claim("sink:y")
    waiting = asyncio.create_task(b.claim("sink:x", wait=30.0))
    await a.close()  # (or dies): its claims go with its connection
    assert await waiting


async def test_a_lost_session_is_connected_again(
    shared: Opener, postgres_dsn: str, pg_spider: str
) -> None:
    """The server may end a session: after `idle_in_transaction_session_timeout` (a process
    paused mid-transaction, whose row locks would keep its hosts from the others; tied to
    the lease TTL), or a restart. The store connects again and runs the statement again."""
    store = await shared()
    await store.add([req("/1"), req("/2")])
    await store.acquire_hosts(10, None)
    one, two = await store.lease("a.com", 2, now=1.0)
    killer = await asyncpg.connect(postgres_dsn)
    try:
        ended = await killer.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid() AND datname = current_database()"
            " AND usename = current_user AND query NOT ILIKE '%pg_terminate_backend%'"
        )
    finally:
        await killer.close()
    assert ended >= 1
    await store.commit([Outcome(one, State.DONE, 1, items=['"1"'])])
    kept, _ = await store.heartbeat([("a.com", one.fence)], 1, 0.0, False)
    assert kept == {"a.com"}
    await store.commit([Outcome(two, State.DONE, 1, items=['"2"'])])
    assert sorted([i async for i in store.items()]) == ['"1"', '"2"']


async def test_a_session_lost_just_before_its_commit_is_run_again(
    shared: Opener, postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session ends after a commit's last statement, before its COMMIT: asyncpg says "the
    underlying connection is closed" when the transaction ends. Nothing was committed, so the
    commit runs again (it used to fail the crawl)."""
    store = await shared()
    await store.add([req("/1")])
    await store.acquire_hosts(10, None)
    (one,) = await store.lease("a.com", 1, now=1.0)
    keep = store._keep  # type: ignore[attr-defined]
    ended: list[int] = []

    async def keep_then_lose_the_session(db: Any, *args: Any) -> None:
        await keep(db, *args)
        if not ended:
            ended.append(db.get_server_pid())
            killer = await asyncpg.connect(postgres_dsn)
            try:
                await killer.execute("SELECT pg_terminate_backend($1)", ended[0])
            finally:
                await killer.close()

    monkeypatch.setattr(store, "_keep", keep_then_lose_the_session)
    monkeypatch.setattr(store, "_plain", lambda outcomes: False)  # statement by statement
    await store.commit([Outcome(one, State.DONE, 1, items=['"1"'])])
    assert ended
    assert [i async for i in store.items()] == ['"1"']  # once
    assert (await store.counts()).done == 1


async def _crawl_a_little(store: PostgresStore) -> tuple[Any, ...]:
    """Commits of every kind a crawl makes, and what the store then says."""
    await store.add([req("/1"), req("/2"), req("/3"), req("/4")])
    await store.acquire_hosts(10, None)
    one, two = await store.lease("a.com", 2, now=1.0)
    await store.commit(  # new hosts: statement by statement
        [Outcome(one, State.DONE, 1, status=200, items=['"1"'], links=[req("/x", host="b.com")])]
    )
    statements = store.statements
    await store.commit(  # plain: one statement
        [
            Outcome(two, State.DONE, 1, status=200, items=['"2"', '"3"'], links=[req("/5")]),
        ],
        counters={"spider/things": 2},
    )
    plain_statements = store.statements - statements
    three, four = await store.lease("a.com", 2, now=1.0)
    await store.commit(
        [
            Outcome(three, State.FAILED, 1, status=404, error=ErrorKind.HTTP_STATUS),
            Outcome(four, State.QUEUED, 1, error=ErrorKind.TIMEOUT, not_before=50.0),
        ]
    )
    counts = await store.counts()
    totals = await store.host_totals()
    return (
        plain_statements,
        sorted([i async for i in store.items()]),
        (counts.done, counts.failed, counts.pending, counts.items, counts.fetched),
        {host: (t.done, t.failed, t.pending, t.items) for host, t in totals.items()},
        await store.counters(),
    )


async def test_a_plain_batch_is_one_statement_and_commits_as_the_long_way_does(
    postgres_dsn: str, pg_spider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    quick = await PostgresStore.open(postgres_dsn, pg_spider)
    try:
        one_statement = await _crawl_a_little(quick)
    finally:
        await quick.close()
    other = f"{pg_spider}b"
    slow = await PostgresStore.open(postgres_dsn, other)
    monkeypatch.setattr(slow, "_plain", lambda outcomes: False)
    try:
        long_way = await _crawl_a_little(slow)
    finally:
        await slow.close()
        drop_schema(postgres_dsn, other)
    assert one_statement[0] == 1
    assert long_way[0] > 3
    assert one_statement[1:] == long_way[1:]
    assert one_statement[1] == ['"1"', '"2"', '"3"']


async def test_a_plain_commit_run_again_after_it_landed_keeps_nothing_twice(
    shared: Opener,
) -> None:
    """A session lost as the one statement's answer came back: it may have landed. Run again,
    it finds its pages closed already, and keeps nothing a second time."""
    store = await shared()
    await store.add([req("/1")])
    await store.acquire_hosts(10, None)
    (one,) = await store.lease("a.com", 1, now=1.0)
    outcome = Outcome(one, State.DONE, 1, status=200, items=['"1"'])
    assert not (await store.commit([outcome]))[0].lost
    (again,) = await store.commit([outcome])
    assert again.lost
    assert not again.items
    assert [i async for i in store.items()] == ['"1"']
    assert (await store.counts()).done == 1
