"""Export: write a store's items to JSON Lines or CSV. Reads the store; never writes it."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from .errors import ConfigError

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
