import asyncio
import sqlite3
from pathlib import Path

import pytest

from crawler import ConfigError, StoreError
from crawler.store import SCHEMA_VERSION, Counts, NewRequest, Outcome, SQLiteStore, State
from tests.conftest import rows
from tests.helpers import fetched_per_host


def req(path: str, host: str = "a.com", priority: int = 0, callback: str = "parse") -> NewRequest:
    return NewRequest(url=f"http://{host}{path}", host=host, priority=priority, callback=callback)


async def test_add_ignores_known_urls_and_lease_orders_by_priority(store_path: Path) -> None:
    async with await SQLiteStore.open(store_path, "s") as store:
        await store.add([req("/1"), req("/2", priority=5), req("/3"), req("/x", host="b.com")])
        await store.add([req("/1"), req("/2")])
        assert await store.hosts_with_work() == ["a.com", "b.com"]
        leased = await store.lease("a.com", 2, now=1.0)
        assert [r.url for r in leased] == ["http://a.com/2", "http://a.com/1"]
        assert [r.url for r in await store.lease("a.com", 5, now=1.0)] == ["http://a.com/3"]
        assert await store.lease("a.com", 5, now=1.0) == []
        counts = await store.counts()
        assert (counts.queued, counts.leased) == (1, 3)


async def test_commit_is_one_unit_with_items_links_and_marks(store_path: Path) -> None:
    async with await SQLiteStore.open(store_path, "s") as store:
        await store.add([req("/1"), req("/2")])
        one, two = await store.lease("a.com", 2, now=1.0)
        await store.commit(
            [
                Outcome(
                    one,
                    State.DONE,
                    1,
                    status=200,
                    items=['{"n": 1}', '{"n": 2}'],
                    links=[req("/2"), req("/3", host="c.com")],
                ),
                Outcome(two, State.QUEUED, 1, error="timeout", not_before=50.0),
            ]
        )
        assert [i async for i in store.items()] == ['{"n": 1}', '{"n": 2}']
        counts = await store.counts()
        assert (counts.done, counts.queued, counts.items) == (1, 2, 2)
        assert await store.lease("a.com", 5, now=10.0) == []  # the retry is not due yet
        assert await store.next_due("a.com") == 50.0
        assert [r.attempts for r in await store.lease("a.com", 5, now=50.0)] == [1]


async def test_cancelled_commit_leaves_nothing_behind(store_path: Path) -> None:
    async with await SQLiteStore.open(store_path, "s") as store:
        await store.add([req("/1")])
        (one,) = await store.lease("a.com", 1, now=1.0)
        task = asyncio.create_task(
            store.commit([Outcome(one, State.DONE, 1, items=['{"a": 1}'], links=[req("/9")])])
        )
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        counts = await store.counts()
        assert (counts.leased, counts.items, counts.done, counts.queued) == (1, 0, 0, 0)


async def test_release_and_reopen_reclaim_leases(store_path: Path) -> None:
    store = await SQLiteStore.open(store_path, "s")
    await store.add([req("/1"), req("/2")])
    await store.lease("a.com", 1, now=1.0)
    assert await store.release() == 1
    await store.lease("a.com", 2, now=1.0)
    await store.close()  # as if the process died holding two leases
    async with await SQLiteStore.open(store_path, "s") as again:
        assert (await again.counts()).queued == 2


async def test_store_of_another_spider_is_refused(store_path: Path) -> None:
    async with await SQLiteStore.open(store_path, "first"):
        pass
    with pytest.raises(ConfigError, match="belongs to spider 'first', not 'second'"):
        await SQLiteStore.open(store_path, "second")
    async with await SQLiteStore.open(store_path, "second", fresh=True) as store:
        assert (await store.counts()).queued == 0


async def test_second_crawl_on_a_store_in_use_is_refused(store_path: Path) -> None:
    async with await SQLiteStore.open(store_path, "s"):
        with pytest.raises(StoreError, match="in use by a running crawl"):
            await SQLiteStore.open(store_path, "s")
        async with await SQLiteStore.open_readonly(store_path) as reader:  # readers are fine
            assert (await reader.counts()).items == 0


async def test_not_a_store_and_other_versions_are_clear_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="is not a crawler store"):
        await SQLiteStore.open(junk, "s")
    with pytest.raises(StoreError, match="is not a crawler store"):
        await SQLiteStore.open_readonly(junk)
    with pytest.raises(ConfigError, match="no store at"):
        await SQLiteStore.open_readonly(tmp_path / "missing.db")

    old = tmp_path / "old.db"
    async with await SQLiteStore.open(old, "s"):
        pass
    import sqlite3

    with sqlite3.connect(old) as db:
        db.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 0"):
        await SQLiteStore.open(old, "s")
    assert rows(old, "SELECT value FROM meta WHERE key = 'spider'") == [("s",)]


_V6_COLUMNS = (
    "id, url, host, callback, priority, depth, meta, any_content_type, state, not_before,"
    " attempts, lease, status, error, message, updated, latency, size"
)


def as_version_6(db: sqlite3.Connection) -> None:
    """Make a store look as it did before schema 7: url unique, no request details or jars."""
    from crawler.store.sqlite import _COUNT_TRIGGERS

    db.execute("ALTER TABLE hosts DROP COLUMN silent_since")  # (schema 10)
    db.execute("DROP TRIGGER count_item_deleted")  # (schema 9)
    db.execute("DROP TABLE counters")  # (schema 8)
    db.execute(f"CREATE TABLE old AS SELECT {_V6_COLUMNS} FROM requests")
    db.execute("DROP TABLE requests")
    db.execute(
        "CREATE TABLE requests (id INTEGER PRIMARY KEY, url TEXT NOT NULL UNIQUE,"
        " host TEXT NOT NULL, callback TEXT NOT NULL, priority INTEGER NOT NULL DEFAULT 0,"
        " depth INTEGER NOT NULL DEFAULT 0, meta TEXT, any_content_type INTEGER NOT NULL"
        " DEFAULT 0, state INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL DEFAULT 0,"
        " attempts INTEGER NOT NULL DEFAULT 0, lease TEXT, status INTEGER, error TEXT,"
        " message TEXT, updated REAL, latency REAL, size INTEGER)"
    )
    db.execute(f"INSERT INTO requests ({_V6_COLUMNS}) SELECT {_V6_COLUMNS} FROM old")
    db.execute("DROP TABLE old")
    db.execute("CREATE INDEX requests_queued ON requests (host, priority DESC, id) WHERE state = 0")
    db.execute("CREATE INDEX requests_leased ON requests (lease) WHERE state = 1")
    for statement in _COUNT_TRIGGERS:
        db.execute(statement)
    db.execute("DROP TABLE sessions")
    db.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")


def drop_counters(db: sqlite3.Connection) -> None:
    """Make a store look as it did before schema 4 (and 5)."""
    as_version_6(db)
    for trigger in ("count_inserted", "count_moved", "count_deleted", "count_item"):
        db.execute(f"DROP TRIGGER {trigger}")
    db.execute("DROP TABLE host_counts")
    db.execute("DROP TABLE callbacks")
    db.execute("ALTER TABLE requests DROP COLUMN latency")
    db.execute("ALTER TABLE requests DROP COLUMN size")


async def test_a_version_3_store_gets_its_totals_counted_once(store_path: Path) -> None:
    async with await SQLiteStore.open(store_path, "s") as store:
        await store.add([req("/1"), req("/2", callback="detail"), req("/x", host="b.com")])
        (first,) = await store.lease("b.com", 1, now=1.0)
        await store.commit([Outcome(first, State.DONE, 1, status=200, items=['{"n": 1}'])])
        await store.lease("a.com", 1, now=1.0)  # left leased: reclaimed when opened again
    with sqlite3.connect(store_path) as db:
        drop_counters(db)
        db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    async with await SQLiteStore.open(store_path, "s") as store:
        assert await store.counts() == Counts(queued=2, done=1, items=1, fetched=1)
        assert await store.hosts_with_work() == ["a.com"]
        assert await fetched_per_host(store) == {"b.com": 1}
        assert await store.callbacks_pending(known=lambda name: name == "parse") == {"detail"}
        assert await store.callbacks_pending(known=lambda name: True) == set()
        await store.add([req("/3")])  # and the triggers keep them from now on
        assert (await store.counts()).queued == 3


async def test_a_version_1_store_is_migrated(store_path: Path) -> None:
    async with await SQLiteStore.open(store_path, "s") as store:
        await store.add([req("/1")])
    with sqlite3.connect(store_path) as db:
        drop_counters(db)
        db.execute("DROP TABLE robots")
        db.execute("DROP TABLE hosts")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    async with await SQLiteStore.open(store_path, "s") as store:
        assert (await store.counts()).queued == 1
        await store.robots_put("http://a.com", 1.0, None)
        assert await store.host_states() == []
    version = rows(store_path, "SELECT value FROM meta WHERE key = 'schema_version'")
    assert version == [(str(SCHEMA_VERSION),)]


async def test_a_version_5_store_counts_its_fetched_pages_once(store_path: Path) -> None:
    from crawler.store.sqlite import _COUNTERS_V4

    async with await SQLiteStore.open(store_path, "s") as store:
        await store.add([req(f"/{n}") for n in range(5)])
        await store.add([NewRequest("http://a.com/t", "a.com", error="trap", message="long")])
        leased = await store.lease("a.com", 5, now=1.0)
        outcomes = [
            Outcome(leased[0], State.DONE, 1, status=200, latency=0.1),
            Outcome(leased[1], State.FAILED, 3, status=500, error="http_status", latency=0.1),
            Outcome(leased[2], State.FAILED, 1, error="robots_disallowed"),
            Outcome(leased[3], State.FAILED, 1, error="blocked_address"),
        ]
        await store.commit(outcomes)
        assert (await store.counts()).fetched == 2
    with sqlite3.connect(store_path) as db:  # as schema 5 kept it: no count of fetched pages
        as_version_6(db)
        for trigger in ("count_inserted", "count_moved", "count_deleted"):
            db.execute(f"DROP TRIGGER {trigger}")
        db.execute("ALTER TABLE host_counts DROP COLUMN fetched")
        for statement in _COUNTERS_V4[2:5]:
            db.execute(statement)
        db.execute("UPDATE requests SET latency = NULL")  # schema 4 stores kept none
        db.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    async with await SQLiteStore.open(store_path, "s") as store:
        assert await fetched_per_host(store) == {"a.com": 2}  # not the trap, robots, blocked
        (last,) = await store.lease("a.com", 1, now=1.0)
        await store.commit([Outcome(last, State.DONE, 1, status=200, latency=0.1)])
        assert (await store.counts()).fetched == 3  # the triggers count from now on


async def test_a_version_6_store_takes_requests_beyond_get(store_path: Path) -> None:
    async with await SQLiteStore.open(store_path, "s") as store:
        await store.add([req("/1"), req("/2", callback="detail")])
        (first,) = await store.lease("a.com", 1, now=1.0)
        await store.commit(
            [Outcome(first, State.DONE, 1, status=200, items=['{"n": 1}'], latency=0.1)]
        )
    with sqlite3.connect(store_path) as db:
        as_version_6(db)
    async with await SQLiteStore.open(store_path, "s") as store:
        assert await store.counts() == Counts(queued=1, done=1, items=1, fetched=1)
        assert [i async for i in store.items()] == ['{"n": 1}']
        assert await store.callbacks_pending(known=lambda name: name == "parse") == {"detail"}
        # a GET keeps its identity, the URL: it is known already
        await store.add([req("/1"), req("/2")])
        assert (await store.counts()).queued == 1
        # a POST to the same URL is another request; so is one with another body
        post = NewRequest(
            "http://a.com/1", "a.com", key="POST http://a.com/1 x", method="POST", body=b"x"
        )
        other = NewRequest(
            "http://a.com/1", "a.com", key="POST http://a.com/1 y", method="POST", body=b"y"
        )
        await store.add([post, other, post])
        assert (await store.counts()).queued == 3
        leased = await store.lease("a.com", 5, now=1.0)
        assert sorted((r.method, r.body) for r in leased if r.method) == [
            ("POST", b"x"),
            ("POST", b"y"),
        ]
    version = rows(store_path, "SELECT value FROM meta WHERE key = 'schema_version'")
    assert version == [(str(SCHEMA_VERSION),)]


async def test_cookie_jars_commit_with_their_pages(store_path: Path) -> None:
    async with await SQLiteStore.open(store_path, "s") as store:
        await store.add([req("/1"), req("/2")])
        one, two = await store.lease("a.com", 2, now=1.0)
        await store.commit(
            [
                Outcome(one, State.DONE, 1, jars={"": "first", "alice": "a1"}),
                Outcome(two, State.DONE, 1, jars={"": "second"}),  # later in the batch: wins
            ]
        )
        assert await store.jars() == {"": "second", "alice": "a1"}
        await store.add([req("/3")])
        (three,) = await store.lease("a.com", 1, now=1.0)
        task = asyncio.create_task(
            store.commit([Outcome(three, State.DONE, 1, jars={"alice": "lost"})])
        )
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await store.jars() == {"": "second", "alice": "a1"}  # with its page, or not
