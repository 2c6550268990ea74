"""Sinks: deliver committed items to other systems (files, databases, queues, APIs).

A sink gets the items the crawl committed, in commit order, each with a stable id (the same
after any resume), in batches: `await sink.write(items)`. After each batch the store keeps a
bookmark of how far the sink got, so a killed crawl starts the sink again from there: a batch
may be written a second time (the bookmark was not kept yet), never skipped. A sink that upserts
by item id therefore gets every item exactly once in effect, across kill -9.

Write one by subclassing `Sink`; `JsonlSink`, `JsonSink` and `CsvSink` (what `-o` uses) keep a
position in their file with the bookmark so that they never write an item twice; `PostgresSink`
upserts into a PostgreSQL table. `Delivery` feeds the crawl's sinks from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigError, SinkTaken
from ..errors import SinkFailed as SinkFailed  # (re-exported)

if TYPE_CHECKING:
    from ..store import ItemFeed, Marks

    class FeedStore(ItemFeed, Marks, Protocol):
        """The part of the store that feeds sinks: items in commit order, and bookmarks."""


log = logging.getLogger("crawler")

#: Items read from the store and written per batch.
BATCH = 1000
#: Seconds a process ending waits for the process feeding a sink to let go of it.
CLAIM_WAIT = 10.0
#: Longest wait before a failing sink is tried again, in seconds.
MAX_BACKOFF = 60.0


class StoredItem:
    """A committed item: `id` (stable), `json` (its text as stored) and `data` (parsed)."""

    __slots__ = ("_data", "id", "json")

    def __init__(self, item_id: int, text: str) -> None:
        self.id = item_id
        self.json = text
        self._data: dict[str, Any] | None = None

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = json.loads(self.json)
        return self._data

    def __repr__(self) -> str:
        return f"StoredItem({self.id}, {self.json[:60]!r})"


class Sink:
    """Where committed items go. Subclass it and write `write(items)`; upsert by `item.id` so
    that a batch written again after a crash changes nothing. `open(spider)` and `close()` are
    optional. Sinks with the same `key` share a bookmark (by default, one per class).

    `batch_size` and `batch_wait`: a sink that writes better in large batches (a Parquet file,
    a warehouse) gets `write` calls of at least `batch_size` items, or of fewer once the first
    of them has waited `batch_wait` seconds, or at the end of the run. Items not written yet
    are read again from the store after a crash: nothing is lost by waiting."""

    batch_size: int = 1
    batch_wait: float = 0.0

    @property
    def key(self) -> str:
        """The name of this sink's bookmark in the store."""
        return f"sink:{type(self).__module__}.{type(self).__qualname__}"

    async def open(self, spider: Any) -> None:
        """Called before the first batch (connect, create a table...)."""

    async def write(self, items: Sequence[StoredItem]) -> None:
        """Deliver `items` (in commit order); raise to have them delivered again later."""
        raise NotImplementedError(f"{type(self).__name__} must define write(items)")

    async def close(self) -> None:
        """Called after the last batch of the run."""

    def resume(self, position: str | None) -> bool:
        """Sinks that keep a position of their own (a file's length) restore it from what
        `position()` returned when the bookmark was kept (None: never). False means the sink
        lost what it had written: it is fed again from the first item."""
        return True

    def position(self) -> str | None:
        """This sink's own part of the bookmark, kept after each batch (see `resume`)."""
        return None


def check_sinks(sinks: Any, where: str) -> list[Sink]:
    """The sinks of `where` as a list of Sink objects; a ConfigError otherwise."""
    if isinstance(sinks, str | bytes) or not isinstance(sinks, Sequence):
        raise ConfigError(f"{where} must be a list of Sink objects")
    for sink in sinks:
        if not isinstance(sink, Sink):
            name = sink.__name__ if isinstance(sink, type) else type(sink).__name__
            raise ConfigError(f"{where}: {name} is not a Sink instance (subclass crawler.Sink)")
    keys = [sink.key for sink in sinks]
    for key in keys:
        if keys.count(key) > 1:
            raise ConfigError(f"{where}: two sinks share the bookmark {key!r}: give each a `key`")
    return list(sinks)


# -- files --------------------------------------------------------------------------------


class _FileSink(Sink):
    """A file written by appending; its length is kept with the bookmark. On resume, a tail
    written after the last bookmark (a crash in between) is cut off and written again; a file
    shorter than its bookmark (edited, deleted, lost to a power cut) is written again whole."""

    def __init__(self, path: str | Path, *, overwrite: bool = False) -> None:
        self.path = Path(path)
        self._length = 0
        #: Start the file over, from the store's first item (`-O`), whatever its bookmark.
        self._overwrite = overwrite

    @property
    def key(self) -> str:
        return f"sink:{type(self).__name__}:{self.path.resolve()}"

    def resume(self, position: str | None) -> bool:
        saved = json.loads(position) if position else {}
        length = int(saved.get("length", 0))
        size = self.path.stat().st_size if self.path.exists() else 0
        fresh = size < length or position is None or self._overwrite
        if size < length and not self._overwrite:
            log.warning("%s is shorter than it was: writing it again from the start", self.path)
        self._overwrite = False
        self._length = 0 if fresh else length
        self._restore({} if fresh else saved)
        with open(self.path, "ab") as out:
            out.truncate(self._length)
        self._mend()
        return not fresh or position is None

    def _mend(self) -> None:
        """Make the file whole again at its kept length (a crash may have left less)."""

    def position(self) -> str | None:
        return json.dumps({"length": self._length, **self._saved()})

    def _append(self, data: bytes, *, at: int | None = None) -> None:
        """Write `data` at the end (or from `at`, what follows it replaced)."""
        with open(self.path, "r+b" if at is not None else "ab") as out:
            size = out.seek(0, os.SEEK_END)
            if size != self._length:  # written by someone else since: never write twice
                raise SinkTaken(
                    f"{self.path} is {size} bytes, {self._length} expected: another process "
                    "is writing it"
                )
            if at is not None:
                out.seek(at)
            out.write(data)
        self._length = (self._length if at is None else at) + len(data)

    def _restore(self, saved: dict[str, Any]) -> None:
        """Restore what the subclass keeps in the bookmark."""

    def _saved(self) -> dict[str, Any]:
        return {}


class JsonlSink(_FileSink):
    """Items as JSON Lines, one object per line, as stored."""

    async def write(self, items: Sequence[StoredItem]) -> None:
        self._append("".join(f"{item.json}\n" for item in items).encode())


class JsonSink(_FileSink):
    """Items as one JSON array, one item per line, as stored. The file is a whole array after
    every batch: a batch replaces its closing bracket with the new items and a new one."""

    _EMPTY, _TAIL = b"[\n]\n", b"\n]\n"

    async def write(self, items: Sequence[StoredItem]) -> None:
        body = ",\n".join(item.json for item in items).encode()
        if not self._length:
            self._append(b"[\n" + body + self._TAIL if items else self._EMPTY)
        elif items:  # after "[" of an empty array, or before the last item's closing tail
            at = 1 if self._length == len(self._EMPTY) else self._length - len(self._TAIL)
            head = b"\n" if at == 1 else b",\n"
            self._append(head + body + self._TAIL, at=at)

    def _mend(self) -> None:
        # a batch cut short by a crash may have overwritten the closing tail it replaced
        if self._length:
            tail = self._EMPTY if self._length == len(self._EMPTY) else self._TAIL
            with open(self.path, "r+b") as out:
                out.seek(self._length - len(tail))
                out.write(tail)


class CsvSink(_FileSink):
    """Items as CSV: the columns are the items' keys in first-seen order (nested values as JSON).
    An item with a new key widens the file: it is rewritten once with the new column."""

    def __init__(
        self, path: str | Path, columns: Sequence[str] = (), *, overwrite: bool = False
    ) -> None:
        super().__init__(path, overwrite=overwrite)
        self._columns: list[str] = list(columns)

    def _restore(self, saved: dict[str, Any]) -> None:
        self._columns = list(saved.get("columns", self._columns if not saved else []))

    def _saved(self) -> dict[str, Any]:
        return {"columns": self._columns}

    async def write(self, items: Sequence[StoredItem]) -> None:
        rows = [item.data for item in items]
        known = set(self._columns)
        new: list[str] = []
        for row in rows:
            for key in row:
                if key not in known:
                    known.add(key)
                    new.append(key)
        if new and self._length:
            self._widen(self._columns + new)
        self._columns += new
        out = io.StringIO(newline="")
        writer = csv.DictWriter(out, fieldnames=self._columns)
        if not self._length:
            writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
        self._append(out.getvalue().encode())

    def _widen(self, columns: list[str]) -> None:
        """Rewrite the file (up to the kept length) with more columns."""
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(self.path, encoding="utf-8", newline="") as source:
            text = source.read()
        out = io.StringIO(newline="")
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(csv.DictReader(io.StringIO(text, newline="")))
        data = out.getvalue().encode()
        tmp.write_bytes(data)
        os.replace(tmp, self.path)
        self._length = len(data)


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


# -- PostgreSQL ---------------------------------------------------------------------------

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")


class PostgresSink(Sink):
    """Items into a PostgreSQL table, upserted by (spider, item id):

        CREATE TABLE <table> (spider text, id bigint, data jsonb, stored_at timestamptz,
                              PRIMARY KEY (spider, id))

    The table is created when missing. Item ids are the store's: a crawl started over with
    --fresh numbers its items again, and overwrites the rows of the earlier crawl it reaches.
    """

    def __init__(self, dsn: str, table: str = "crawler_items") -> None:
        if not dsn.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"PostgresSink takes a postgresql:// DSN, got {dsn!r}")
        if not _TABLE.match(table):
            raise ConfigError(f"PostgresSink: {table!r} is not a table name (schema.table)")
        self.dsn = dsn
        self.table = ".".join(f'"{part}"' for part in table.split("."))
        self._name = table
        self._spider = ""
        self._connection: Any = None

    @property
    def key(self) -> str:
        from ..store.shared import safe_dsn

        return f"sink:postgres:{safe_dsn(self.dsn)}:{self._name}"

    async def open(self, spider: Any) -> None:
        import asyncpg

        self._spider = spider.name
        self._connection = await asyncpg.connect(self.dsn)
        await self._connection.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (spider text NOT NULL, id bigint NOT NULL,"
            " data jsonb NOT NULL, stored_at timestamptz NOT NULL DEFAULT now(),"
            " PRIMARY KEY (spider, id))"
        )

    async def write(self, items: Sequence[StoredItem]) -> None:
        if self._connection is None or self._connection.is_closed():
            import asyncpg

            self._connection = await asyncpg.connect(self.dsn)
        await self._connection.execute(
            f"INSERT INTO {self.table} (spider, id, data)"
            " SELECT $1, u.id, u.data::jsonb FROM unnest($2::bigint[], $3::text[]) u(id, data)"
            " ON CONFLICT (spider, id) DO UPDATE SET data = excluded.data, stored_at = now()",
            self._spider,
            [item.id for item in items],
            # jsonb has no NUL character: a page's stray one becomes U+FFFD
            [item.json.replace("\\u0000", "\\ufffd") for item in items],
        )

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


# -- feeding the sinks --------------------------------------------------------------------


class Delivery:
    """Feeds sinks from the store: `start()` once open, `poke()` after each commit, `finish()`
    once the crawl ended (the last items, then each sink's close); `cancel()` on an error."""

    def __init__(self, store: FeedStore, sinks: Sequence[Sink], spider: Any) -> None:
        self._store = store
        self._sinks = list(sinks)
        self._spider = spider
        self._cursors: dict[str, str | None] = {}
        #: Per sink: items read from the store but not written yet (a batch filling up), the
        #: bookmark after them, and when the first of them was read (monotonic seconds).
        self._pending: dict[str, list[tuple[int, str]]] = {}
        self._read: dict[str, str | None] = {}
        self._since: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._opened: list[Sink] = []
        self._task: asyncio.Task[None] | None = None
        self._tried: dict[str, float] = {}  # when each sink was last claimed, by key
        self._marks: dict[str, str | None] = {}  # each sink's bookmark as this process left it
        #: Items written to each sink in this run, by key.
        self.written: dict[str, int] = {}

    async def open(self) -> None:
        """Claim each sink (on a shared store, another process may be feeding it), restore
        its bookmark and open it (errors are ConfigErrors: bad setup)."""
        for sink in self._sinks:
            self.written[sink.key] = 0
            await self._claim(sink)
        self.poke()

    async def _claim(self, sink: Sink, wait: float = 0.0) -> None:
        """Open `sink` from its bookmark if this process may feed it now (after waiting up to
        `wait` seconds for the process feeding it)."""
        key = sink.key
        self._tried[key] = time.monotonic()
        if not await self._store.claim(key, wait):
            log.debug("sink %s is fed by another process of the crawl", key)
            return
        mark = await self._store.get_mark(key)
        self._marks[key] = mark
        saved = json.loads(mark) if mark else {}
        cursor = saved.get("cursor")
        if not sink.resume(saved.get("position") if mark else None):
            cursor = None
        self._cursors[key] = self._read[key] = cursor
        self._pending[key] = []
        try:
            await sink.open(self._spider)
        except Exception as exc:
            raise ConfigError(
                f"sink {type(sink).__name__} could not open: {type(exc).__name__}: {exc}"
            ) from exc
        self._opened.append(sink)

    def poke(self) -> None:
        """New items were committed."""
        self._wake.set()

    def start(self) -> None:
        """Deliver in a task of its own as items are committed, until `finish()`."""
        if self._sinks:
            self._task = asyncio.create_task(self._run(), name="delivery")

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        """A failing sink is tried again after a back-off (1, 2, 4... up to 60 s) while the
        crawl goes on."""
        backoff = 1.0
        while not self._closing.is_set():
            due = self._next_due()
            if due is None:
                await self._wake.wait()
            else:  # a batch filling up is written by its deadline, new items or not
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(due - time.monotonic(), 0))
            self._wake.clear()
            try:
                await self._catch_up()
                backoff = 1.0
            except SinkFailed as exc:
                log.error("%s; trying again in %g s", exc, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                self._wake.set()

    async def finish(self) -> None:
        """Deliver what is left, then close the sinks. Raises SinkFailed when a sink could not
        take its items (they are delivered on the next run)."""
        self._closing.set()
        self._wake.set()
        if self._task is not None:
            task, self._task = self._task, None
            await task  # its last pass ends; the one below is the final one
        error: SinkFailed | None = None
        try:
            await self._catch_up(last=True)
        except SinkFailed as exc:
            error = exc
        for sink in self._opened:
            waiting = await self._store.items_waiting(self._cursors[sink.key])
            if error is not None and error.sink == sink.key:
                error.waiting = waiting + await self._undelivered(self._cursors[sink.key])
            elif waiting:
                log.warning(
                    "sink %s: %d items are committed but cannot be delivered yet (a transaction "
                    "elsewhere on the PostgreSQL server is still running); the next run, or a "
                    "process of the crawl still running, delivers them",
                    sink.key,
                    waiting,
                )
        for sink in self._opened:
            try:
                await sink.close()
            except Exception as exc:
                error = error or SinkFailed(
                    f"sink {type(sink).__name__}: close() raised {type(exc).__name__}: {exc}",
                    sink.key,
                )
        self._opened.clear()
        if error is not None:
            raise error

    async def _undelivered(self, cursor: str | None) -> int:
        """Items the store gives after `cursor` (read to count them: a failing sink's end)."""
        count = 0
        while True:
            rows, cursor = await self._store.items_since(cursor, BATCH)
            if not rows:
                return count
            count += len(rows)

    def _next_due(self) -> float | None:
        """When the first batch filling up must be written (monotonic), if one is."""
        dues = [
            self._since[sink.key] + sink.batch_wait
            for sink in self._opened
            if self._pending.get(sink.key)
        ]
        return min(dues) if dues else None

    async def _catch_up(self, *, last: bool = False) -> None:
        for sink in self._sinks:  # one another process fed may be this one's now
            if sink not in self._opened and (last or time.monotonic() - self._tried[sink.key] > 1):
                # at the end, wait a little: the process feeding it may be ending too (and
                # have missed this one's last items); one that goes on feeds them later
                await self._claim(sink, CLAIM_WAIT if last else 0.0)
        for sink in list(self._opened):
            key = sink.key
            pending = self._pending[key]
            while True:
                rows, cursor = await self._store.items_since(self._read[key], BATCH)
                if rows:
                    if not pending:
                        self._since[key] = time.monotonic()
                    pending += rows
                    self._read[key] = cursor
                due = len(pending) >= sink.batch_size or (
                    pending and (last or time.monotonic() - self._since[key] >= sink.batch_wait)
                )
                if due and not await self._write(sink, pending):
                    break
                if not rows:
                    break

    async def _write(self, sink: Sink, pending: list[tuple[int, str]]) -> bool:
        """Write `pending` to `sink` and move its bookmark past them; False when this process
        stops feeding it. Raises SinkFailed (the items stay pending)."""
        key = sink.key
        try:
            await sink.write([StoredItem(item_id, text) for item_id, text in pending])
        except SinkTaken as exc:
            log.error("sink %s: %s; this process stops feeding it", key, exc)
            self._opened.remove(sink)
            await sink.close()
            return False
        except Exception as exc:
            raise SinkFailed(
                f"sink {type(sink).__name__}: {type(exc).__name__}: {exc} (its items "
                "stay in the store and are delivered on the next run)",
                key,
            ) from exc
        cursor = self._cursors[key] = self._read[key]
        self.written[key] += len(pending)
        pending.clear()
        mark = json.dumps({"cursor": cursor, "position": sink.position()})
        if not await self._store.move_mark(key, self._marks[key], mark):
            # never expected (one process feeds a sink at a time): say so, and leave
            # the sink to the process that moved its bookmark
            log.error(
                "sink %s: another process moved its bookmark; this one stops feeding it",
                key,
            )
            self._opened.remove(sink)
            await sink.close()
            return False
        self._marks[key] = mark
        return True
