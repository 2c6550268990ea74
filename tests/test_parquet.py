"""Parquet items (`-o items.parquet`; crawl/parquet.py): a folder of parts written whole at
commit points, readable by pandas and DuckDB at every moment (after kill -9 too), each item
once across kill -9; one schema across parts, widened as items disagree."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import duckdb
import pandas
import pyarrow.parquet
import pytest

from crawler.crawl.parquet import ParquetSink
from crawler.crawl.sinks import StoredItem
from tests.sites import GraphSite
from tests.test_cli import SPIDER, acli, cli, run_args, run_until_hits


def items(*rows: dict[str, object]) -> list[StoredItem]:
    return [StoredItem(n, json.dumps(row)) for n, row in enumerate(rows)]


async def test_one_schema_across_parts_widened_as_items_disagree(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path / "i.parquet")
    sink.resume(None)
    await sink.write(items({"a": 1, "flag": True}, {"a": 2, "flag": None}))
    await sink.write(items({"a": 2.5, "tags": ["x", "y"]}))  # a float, a new column (a list)
    await sink.write(items({"a": "n/a", "flag": False, "meta": {"k": 1}}))  # text now
    assert pandas.read_parquet(tmp_path / "i.parquet").shape == (4, 4)
    table = pyarrow.parquet.read_table(tmp_path / "i.parquet").to_pydict()
    assert list(table) == ["a", "flag", "tags", "meta"]
    assert table["a"] == ["1", "2", "2.5", "n/a"]  # widened twice, nothing lost
    assert table["flag"] == [True, None, None, False]
    assert table["tags"] == [None, None, '["x", "y"]', None]
    assert table["meta"][-1] == '{"k": 1}'
    schemas = {
        str(duckdb.sql(f"DESCRIBE '{p}'").fetchall()) for p in (tmp_path / "i.parquet").iterdir()
    }
    assert len(schemas) == 1  # every part: the one schema


async def test_a_resumed_sink_drops_parts_past_its_bookmark(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path / "i.parquet")
    sink.resume(None)
    await sink.write(items({"a": 1}))
    kept = sink.position()
    await sink.write(items({"a": 2}))  # written, but its bookmark never kept: a kill -9
    (tmp_path / "i.parquet" / ".part-00002.parquet.tmp").write_bytes(b"half")
    again = ParquetSink(tmp_path / "i.parquet")
    assert again.resume(kept)
    assert sorted(p.name for p in (tmp_path / "i.parquet").iterdir()) == ["part-00000.parquet"]
    await again.write(items({"a": 3}))
    assert pandas.read_parquet(tmp_path / "i.parquet")["a"].tolist() == [1, 3]


async def test_kill_9_leaves_a_readable_folder_and_the_rerun_writes_each_item_once(
    graph: GraphSite, tmp_path: Path
) -> None:
    # parts of 20 items (not 10,000), so that the killed crawl has written some
    (tmp_path / "graph.py").write_text(
        SPIDER.replace("from crawler import", "from crawler import ParquetSink,").replace(
            "    custom_settings =",
            '    sinks = [ParquetSink("items.parquet", batch_size=20)]\n    custom_settings =',
        )
    )
    args = run_args(graph, "-s", "concurrency=2")
    code, stderr = await run_until_hits(graph, args, tmp_path, 200, signal.SIGKILL)
    assert code == -signal.SIGKILL, stderr
    out = tmp_path / "items.parquet"
    partial = pandas.read_parquet(out)  # what the killed crawl wrote: whole parts, readable
    assert len(partial) >= 20
    assert partial["url"].is_unique
    proc = await acli(*args, cwd=tmp_path)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    frame = pandas.read_parquet(out)
    assert sorted(frame["url"]) == sorted(graph.all_urls())  # each page's item, once
    counted = duckdb.sql(f"SELECT count(*), count(DISTINCT url) FROM '{out}/*.parquet'")
    assert counted.fetchall() == [(len(graph.all_urls()), len(graph.all_urls()))]


def test_export_writes_a_folder_and_replaces_the_old_one(tmp_path: Path) -> None:
    import asyncio

    from crawler.records import NewRequest, Outcome, State
    from crawler.store import SQLiteStore

    async def fill() -> None:
        store = await SQLiteStore.open(tmp_path / "s.db", "s")
        await store.add([NewRequest(url="http://a/1", host="a")])
        await store.acquire_hosts(1, None)
        (row,) = await store.lease("a", 1, now=1.0)
        await store.commit([Outcome(row, State.DONE, 1, items=['{"n": 1}', '{"n": 2}'])])
        await store.close()

    asyncio.run(fill())
    (tmp_path / "out.parquet").mkdir()
    (tmp_path / "out.parquet" / "part-00009.parquet").write_bytes(b"stale")
    result = cli("export", "--store", "s.db", "-o", "out.parquet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out.parquet").iterdir()) == ["part-00000.parquet"]
    assert pandas.read_parquet(tmp_path / "out.parquet")["n"].tolist() == [1, 2]


def test_a_file_in_the_way_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_text("not a folder")
    with pytest.raises(Exception, match="is a file"):
        ParquetSink(tmp_path / "x.parquet").resume(None)
