"""Sinks: committed items delivered from a bookmark, to files and to PostgreSQL."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from crawler import CsvSink, JsonlSink, PostgresSink, Request, Response, Sink, Spider, StoredItem
from crawler.crawl.sinks import SinkFailed
from tests.conftest import rows
from tests.helpers import crawl, html


def chain(request: httpx.Request) -> httpx.Response:
    """/0 -> /1 -> ... -> /9, each page one item."""
    n = int(request.url.path.strip("/") or 0)
    return html(f'<a href="/{n + 1}">next</a>' if n < 9 else "end")


class Collect(Sink):
    def __init__(self, fail: int = 0) -> None:
        self.got: list[tuple[int, dict[str, Any]]] = []
        self.fail = fail
        self.opened = self.closed = 0

    async def open(self, spider: Any) -> None:
        self.opened += 1

    async def write(self, items: Sequence[StoredItem]) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("the queue is down")
        self.got += [(item.id, item.data) for item in items]

    async def close(self) -> None:
        self.closed += 1


def spider_with(*sinks: Sink, extra: dict[str, Any] | None = None) -> Spider:
    class Chain(Spider):
        name = "chain"
        start_urls = ["http://a.com/0"]

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            n = int(response.url.rsplit("/", 1)[1])
            yield {"n": n, **({"extra": n} if extra and n in extra["at"] else {})}
            for url in response.links():
                yield Request(url)

    Chain.sinks = list(sinks)
    return Chain()


def stored(path: Path) -> list[tuple[int, dict[str, Any]]]:
    return [(int(i), json.loads(str(d))) for i, d in rows(path, "SELECT id, data FROM items")]


async def test_a_sink_gets_every_item_once_with_stable_ids_across_runs(store_path: Path) -> None:
    first = Collect()
    await crawl(spider_with(first), chain, store_path, max_pages=4, concurrency=1)
    assert [data["n"] for _, data in first.got] == [0, 1, 2, 3]
    assert (first.opened, first.closed) == (1, 1)
    second = Collect()
    await crawl(spider_with(second), chain, store_path, concurrency=1)
    assert [data["n"] for _, data in second.got] == [4, 5, 6, 7, 8, 9]
    assert first.got + second.got == stored(store_path)  # the store's ids, in commit order


async def test_a_failing_sink_keeps_its_items_for_the_next_run(store_path: Path) -> None:
    down = Collect(fail=1000)
    with pytest.raises(SinkFailed, match="the queue is down") as failed:
        await crawl(spider_with(down), chain, store_path)
    assert failed.value.waiting == 10
    assert "10 items wait for it in the store" in str(failed.value)
    assert down.got == []
    assert down.closed == 1
    assert len(stored(store_path)) == 10  # the crawl itself finished
    up = Collect()
    await crawl(spider_with(up), chain, store_path)  # "already complete": only delivery
    assert sorted(data["n"] for _, data in up.got) == list(range(10))


async def test_a_sink_that_recovers_gets_everything(store_path: Path) -> None:
    flaky = Collect(fail=1)
    await crawl(spider_with(flaky), chain, store_path, concurrency=1)
    assert [data["n"] for _, data in flaky.got] == list(range(10))


async def test_file_sinks_resume_cut_a_torn_tail_and_rewrite_a_lost_file(
    store_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "items.jsonl"
    await crawl(spider_with(JsonlSink(out)), chain, store_path, max_pages=5, concurrency=1)
    assert len(out.read_text().splitlines()) == 5
    with open(out, "a") as f:
        f.write('{"n": 99, "torn')  # written after the last bookmark, then a crash
    await crawl(spider_with(JsonlSink(out)), chain, store_path, concurrency=1)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [item["n"] for item in lines] == list(range(10))
    out.write_text("")  # lost (shorter than its bookmark): written again from the start
    await crawl(spider_with(JsonlSink(out)), chain, store_path)
    assert [json.loads(line)["n"] for line in out.read_text().splitlines()] == list(range(10))


async def test_csv_sink_widens_the_file_when_a_new_column_appears(
    store_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "items.csv"
    spider = spider_with(CsvSink(out), extra={"at": {7}})
    await crawl(spider, chain, store_path, max_pages=5, concurrency=1)
    spider = spider_with(CsvSink(out), extra={"at": {7}})
    await crawl(spider, chain, store_path, concurrency=1)
    with open(out, newline="") as f:
        table = list(csv.DictReader(f))
    assert [row["n"] for row in table] == [str(n) for n in range(10)]
    assert [row["extra"] for row in table] == ["", "", "", "", "", "", "", "7", "", ""]


async def test_two_sinks_with_one_bookmark_are_refused(store_path: Path, tmp_path: Path) -> None:
    from crawler import ConfigError

    with pytest.raises(ConfigError, match="share the bookmark"):
        await crawl(spider_with(Collect(), Collect()), chain, store_path)


async def test_postgres_sink_upserts_exactly_the_stored_items(
    store_path: Path, postgres_dsn: str, pg_spider: str
) -> None:
    table = f"{pg_spider}_items"
    sink = PostgresSink(postgres_dsn, table=table)
    await crawl(spider_with(sink), chain, store_path, max_pages=6)
    # a batch delivered twice (a crash before its bookmark was kept) changes nothing
    again = PostgresSink(postgres_dsn, table=table)
    await again.open(spider_with())
    await again.write([StoredItem(i, json.dumps(d)) for i, d in stored(store_path)[:3]])
    await again.close()
    await crawl(spider_with(PostgresSink(postgres_dsn, table=table)), chain, store_path)
    connection = await asyncpg.connect(postgres_dsn)
    try:
        found = await connection.fetch(f'SELECT spider, id, data FROM "{table}" ORDER BY id')
        await connection.execute(f'DROP TABLE "{table}"')
    finally:
        await connection.close()
    assert [(r["id"], json.loads(r["data"])) for r in found] == stored(store_path)
    assert {r["spider"] for r in found} == {"chain"}


def test_postgres_sink_checks_its_arguments() -> None:
    from crawler import ConfigError

    with pytest.raises(ConfigError, match="postgresql:// DSN"):
        PostgresSink("mysql://x")
    with pytest.raises(ConfigError, match="is not a table name"):
        PostgresSink("postgresql://x/db", table="items; DROP TABLE x")


async def test_a_file_sink_written_by_another_process_meanwhile_writes_nothing(
    tmp_path: Path,
) -> None:
    from crawler.crawl.sinks import SinkTaken

    first, second = JsonlSink(tmp_path / "items.jsonl"), JsonlSink(tmp_path / "items.jsonl")
    for sink in (first, second):  # both resume from the same bookmark: never expected
        assert sink.resume(None)
    await first.write([StoredItem(1, '{"n": 1}')])
    with pytest.raises(SinkTaken, match="another process is writing it"):
        await second.write([StoredItem(1, '{"n": 1}')])
    assert (tmp_path / "items.jsonl").read_text() == '{"n": 1}\n'  # once


def test_a_run_ended_by_a_sink_failure_still_prints_its_summary(tmp_path: Path) -> None:
    from crawler.tools.demo import DemoShop, serve
    from tests.test_cli import cli

    (tmp_path / "down.py").write_text(
        "from crawler import Sink, Spider\n"
        "class Down(Sink):\n"
        "    async def write(self, items):\n"
        "        raise ConnectionError('the queue is down')\n"
        "class Shop(Spider):\n"
        "    name = 'shop'\n"
        "    sinks = [Down()]\n"
        "    async def parse(self, response):\n"
        "        yield {'url': response.url}\n"
    )
    with serve(DemoShop(5)) as base:
        result = cli("run", "down.py", "-a", f"start_urls={base}", "-q", cwd=tmp_path)
    assert result.returncode == 1
    assert "crawl complete: 1 pages" in result.stderr
    assert "store shop.db: 1 URLs done" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: sink Down: ConnectionError: the queue is down")
    assert last.endswith(
        "1 items wait for it in the store: run the same command again to deliver them"
    )


async def test_the_json_sink_is_a_whole_array_after_every_batch_and_after_a_crash(
    tmp_path: Path,
) -> None:
    from crawler import JsonSink

    out = tmp_path / "items.json"

    def batch(*ns: int) -> list[StoredItem]:
        return [StoredItem(n, json.dumps({"n": n})) for n in ns]

    sink = JsonSink(out)
    sink.resume(None)
    await sink.write([])
    assert json.loads(out.read_text()) == []
    await sink.write(batch(1, 2))
    assert json.loads(out.read_text()) == [{"n": 1}, {"n": 2}]
    await sink.write(batch(3))
    kept = sink.position()  # the bookmark after the second batch
    with open(out, "r+b") as f:  # a crash in the middle of the next batch: its tail replaced
        f.seek(-3, 2)
        f.write(b',\n{"n": 4')
    again = JsonSink(out)
    assert again.resume(kept)
    assert json.loads(out.read_text()) == [{"n": 1}, {"n": 2}, {"n": 3}]
    await again.write(batch(4, 5))
    assert [i["n"] for i in json.loads(out.read_text())] == [1, 2, 3, 4, 5]
