"""Export: write a store's items to JSON Lines or CSV, whole (`export_items`) or kept in step with
a running crawl's commits (`JsonlFollower`). Reads items; writes only its own bookmark."""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .store import Store

log = logging.getLogger(__name__)

FORMATS = (".jsonl", ".csv")


def check_output(path: str | Path) -> Path:
    """The output path, if its suffix names a format we write; a ConfigError otherwise."""
    file = Path(path)
    if file.suffix.lower() not in FORMATS:
        raise ConfigError(f"cannot export to {file}: the name must end in .jsonl or .csv")
    return file


async def export_items(items: Callable[[], AsyncIterator[str]], path: str | Path) -> int:
    """Write every item to `path` (.jsonl or .csv), replacing it atomically; returns the count.

    `items` opens a fresh pass over the stored JSON texts (CSV makes two: one for the columns).
    CSV columns are the union of the items' keys in first-seen order; nested values are JSON.
    """
    file = check_output(path)
    tmp = file.with_name(f".{file.name}.tmp")
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as out:
            if file.suffix.lower() == ".jsonl":
                async for data in items():
                    out.write(data)
                    out.write("\n")
                    count += 1
            else:
                columns: dict[str, None] = {}
                async for data in items():
                    columns.update(dict.fromkeys(json.loads(data)))
                writer = csv.DictWriter(out, fieldnames=list(columns))
                writer.writeheader()
                async for data in items():
                    writer.writerow({k: _cell(v) for k, v in json.loads(data).items()})
                    count += 1
        os.replace(tmp, file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


class JsonlFollower:
    """Keeps a .jsonl file in step with the items a crawl commits, exactly once, across
    crashes and resumes: `catch_up()` after each commit appends the new items.

    The store keeps a bookmark, "last item id written, file length then", updated after the
    file. On `open()`, a tail written after the last bookmark (a crash in between) is cut off
    and appended again; a file shorter than its bookmark (edited, deleted, or lost to a power
    cut) is written again from the first item. Nothing a bookmark covers is ever truncated.
    """

    def __init__(self, store: Store, path: str | Path) -> None:
        self._store = store
        self.path = Path(path)
        self._key = f"export:{self.path.resolve()}"
        self._last_id = 0
        self._length = 0
        self.written = 0

    async def open(self) -> None:
        mark = await self._store.get_mark(self._key)
        last_id, length = (int(part) for part in mark.split()) if mark else (0, 0)
        size = self.path.stat().st_size if self.path.exists() else 0
        if size < length:
            log.warning("%s is shorter than it was: writing it again from the start", self.path)
            last_id, length = 0, 0
        with open(self.path, "ab") as out:
            out.truncate(length)
        self._last_id, self._length = last_id, length
        await self.catch_up()

    async def catch_up(self) -> None:
        """Append the items committed since the last call (or since `open`)."""
        while rows := await self._store.items_after(self._last_id, 5000):
            data = "".join(f"{text}\n" for _, text in rows).encode()
            with open(self.path, "ab") as out:
                out.write(data)
            self._last_id = rows[-1][0]
            self._length += len(data)
            self.written += len(rows)
            await self._store.set_mark(self._key, f"{self._last_id} {self._length}")
