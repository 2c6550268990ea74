"""Export: write a store's items to a JSON Lines, JSON, CSV file or a Parquet folder, whole,
with the file sinks that `-o` keeps in step with a running crawl (see sinks.py, parquet.py)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from ..errors import ConfigError
from .sinks import BATCH, CsvSink, JsonlSink, JsonSink, Sink, StoredItem

FORMATS = (".jsonl", ".json", ".csv", ".parquet")


def check_output(path: str | Path) -> Path:
    """The output path, if its suffix names a format we write; a ConfigError otherwise."""
    file = Path(path)
    if file.suffix.lower() not in FORMATS:
        raise ConfigError(
            f"cannot export to {file}: the name must end in .jsonl, .json, .csv or .parquet"
        )
    return file


def file_sink(
    path: str | Path,
    columns: list[str] | None = None,
    *,
    suffix: str = "",
    overwrite: bool = False,
) -> Sink:
    """The sink writing items to `path` in the format its suffix (or `suffix`) names; with
    `overwrite`, the file is started over with the store's first item."""
    file = Path(path)
    kind = (suffix or check_output(file).suffix).lower()
    if kind == ".jsonl":
        return JsonlSink(file, overwrite=overwrite)
    if kind == ".json":
        return JsonSink(file, overwrite=overwrite)
    if kind == ".parquet":
        from .parquet import ParquetSink  # (pyarrow: imported when Parquet is written)

        return ParquetSink(file, overwrite=overwrite)
    return CsvSink(file, columns or (), overwrite=overwrite)


async def export_items(items: Callable[[], AsyncIterator[str]], path: str | Path) -> int:
    """Write every item to `path` (.jsonl, .json or .csv), replacing it atomically; returns the
    count.

    `items` opens a fresh pass over the stored JSON texts (CSV makes two: one for the columns).
    CSV columns are the union of the items' keys in first-seen order; nested values are JSON.
    """
    file = check_output(path)
    tmp = file.with_name(f".{file.name}.tmp")
    columns: dict[str, None] = {}
    if file.suffix.lower() == ".csv":
        async for data in items():
            columns.update(dict.fromkeys(json.loads(data)))
    _remove(tmp)
    sink = file_sink(tmp, list(columns), suffix=file.suffix)
    sink.resume(None)
    count = 0
    try:
        batch: list[StoredItem] = []
        async for data in items():
            count += 1
            batch.append(StoredItem(count, data))
            if len(batch) >= max(BATCH, sink.batch_size):
                await sink.write(batch)
                batch = []
        if batch or not count:
            await sink.write(batch)
        await sink.close()
        if tmp.is_dir() and file.exists():  # a Parquet folder: the old one goes after
            old = file.with_name(f".{file.name}.old")
            _remove(old)
            os.replace(file, old)
            os.replace(tmp, file)
            _remove(old)
        else:
            os.replace(tmp, file)
    except BaseException:
        _remove(tmp)
        raise
    return count


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
