"""Items as Parquet (`-o items.parquet`): a dataset folder, as Spark and pyarrow write them:
`items.parquet/part-00000.parquet`, `part-00001.parquet`... each one row group of a batch of
items (10,000, or what a minute brought, or the run's last), written whole to a hidden file and
renamed into place. Readers (pandas.read_parquet("items.parquet"), DuckDB's
read_parquet('items.parquet/*.parquet'), polars, Spark) see whole parts only, at every moment:
a killed crawl's folder stays readable.

Exactly once: the sink's bookmark counts the parts it wrote; a run starting removes parts past
it (written after the last bookmark: their items come again). Items of a batch still filling up
are read again from the store after a crash.

Columns are the items' keys in first-seen order, typed by their values: booleans, integers
(int64), floats (float64), text; lists and objects as JSON text. A column whose values disagree
is widened (integers and floats: float64; anything else: text) and the parts written before are
rewritten with the wider schema, as is a column that appears late (null in earlier parts): every
part has the one schema, which is what readers of a folder expect.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .sinks import Sink, StoredItem

log = logging.getLogger("crawler")

#: Column types, narrowest first: a column widens to the first type that holds both.
_BOOL, _INT, _FLOAT, _TEXT, _NULL = "bool", "int64", "float64", "string", "null"


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ConfigError("Parquet output needs pyarrow: pip install 'crawler[parquet]'") from None
    return pyarrow


def _kind(value: Any) -> str:
    if value is None:
        return _NULL
    if isinstance(value, bool):
        return _BOOL
    if isinstance(value, int):
        return _INT if -(2**63) <= value < 2**63 else _TEXT
    if isinstance(value, float):
        return _FLOAT
    return _TEXT


def _wider(a: str, b: str) -> str:
    if a == b or b == _NULL:
        return a
    if a == _NULL:
        return b
    if {a, b} == {_INT, _FLOAT}:
        return _FLOAT
    return _TEXT


def _cell(value: Any, kind: str) -> Any:
    """A value as its column holds it."""
    if value is None:
        return None
    if kind == _TEXT:
        if isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False)
    if kind == _FLOAT:
        return float(value)
    return value


class ParquetSink(Sink):
    """Items into the Parquet dataset folder `path` (see the module): a part of `batch_size`
    items, or of what came in `batch_wait` seconds."""

    def __init__(
        self,
        path: str | Path,
        *,
        overwrite: bool = False,
        batch_size: int = 10_000,
        batch_wait: float = 60.0,
    ) -> None:
        if batch_size < 1 or batch_wait < 0:
            raise ConfigError("ParquetSink: batch_size must be at least 1, batch_wait >= 0")
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        self.pa = _pyarrow()
        self.path = Path(path)
        self._overwrite = overwrite
        self._parts = 0
        #: Column -> type, in first-seen order.
        self._schema: dict[str, str] = {}

    @property
    def key(self) -> str:
        return f"sink:ParquetSink:{self.path.resolve()}"

    def part(self, number: int) -> Path:
        return self.path / f"part-{number:05d}.parquet"

    def resume(self, position: str | None) -> bool:
        saved = json.loads(position) if position else {}
        fresh = position is None or self._overwrite
        self._overwrite = False
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"{self.path} is a file: Parquet output is a folder of parts")
        self.path.mkdir(parents=True, exist_ok=True)
        parts = 0 if fresh else int(saved.get("parts", 0))
        missing = [n for n in range(parts) if not self.part(n).exists()]
        if missing:
            log.warning(
                "%s: %s is gone: writing every part again", self.path, self.part(missing[0])
            )
            fresh, parts = True, 0
        for leftover in self.path.iterdir():  # parts past the bookmark, unfinished writes
            name = leftover.name
            numbered = name.startswith("part-") and name.endswith(".parquet")
            if name.startswith(".part-") or (numbered and int(name[5:-8] or 0) >= parts):
                leftover.unlink()
        self._parts = parts
        self._schema = {} if fresh else dict(saved.get("schema", []))
        self._conform(range(parts))  # a crash while widening left older schemas behind
        return not fresh or position is None

    def position(self) -> str | None:
        return json.dumps({"parts": self._parts, "schema": list(self._schema.items())})

    async def write(self, items: Sequence[StoredItem]) -> None:
        rows = [item.data for item in items]
        widened: list[str] = []
        schema = self._schema
        for row in rows:
            for column, value in row.items():
                kind = _kind(value) if not isinstance(value, dict | list) else _TEXT
                known = schema.get(column)
                if known is None:
                    schema[column] = kind
                    if self._parts:
                        widened.append(column)  # null in the parts before
                elif (wider := _wider(known, kind)) != known:
                    schema[column] = wider
                    widened.append(column)
        if widened and self._parts:
            self._conform(range(self._parts))
        table = self._table({c: [_cell(r.get(c), k) for r in rows] for c, k in schema.items()})
        self._put(self._parts, table)
        self._parts += 1

    def _arrow_schema(self) -> Any:
        pa = self.pa
        types = {
            _BOOL: pa.bool_(),
            _INT: pa.int64(),
            _FLOAT: pa.float64(),
            _TEXT: pa.string(),
            _NULL: pa.string(),  # (a column all null so far: text, until values say more)
        }
        return pa.schema([(column, types[kind]) for column, kind in self._schema.items()])

    def _table(self, columns: dict[str, list[Any]]) -> Any:
        return self.pa.Table.from_pydict(columns, schema=self._arrow_schema())

    def _put(self, number: int, table: Any) -> None:
        """Write a part whole under a hidden name, then rename it into place."""
        hidden = self.path / f".part-{number:05d}.parquet.tmp"
        self.pa.parquet.write_table(table, hidden, compression="zstd")
        os.replace(hidden, self.part(number))

    def _conform(self, numbers: range) -> None:
        """Rewrite the parts whose schema is not the sink's (new columns null, wider types
        cast: integers to floats, anything to text as JSON would write it)."""
        if not numbers:
            return
        pa = self.pa
        target = self._arrow_schema()
        for number in numbers:
            path = self.part(number)
            if pa.parquet.read_schema(path).equals(target):
                continue
            old = pa.parquet.read_table(path)
            columns = {}
            for field in target:
                if field.name not in old.column_names:
                    columns[field.name] = pa.nulls(old.num_rows, field.type)
                    continue
                column = old.column(field.name)
                if column.type.equals(field.type):
                    columns[field.name] = column
                elif pa.types.is_boolean(column.type) and pa.types.is_string(field.type):
                    values = column.to_pylist()
                    columns[field.name] = pa.array(
                        [None if v is None else json.dumps(v) for v in values], pa.string()
                    )
                else:
                    columns[field.name] = column.cast(field.type)
            self._put(number, pa.Table.from_pydict(columns, schema=target))
            log.info("%s: rewritten with the wider schema", path)
