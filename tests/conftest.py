from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.sites import GraphSite


@pytest.fixture
async def graph() -> AsyncIterator[GraphSite]:
    site = GraphSite(hosts=4, pages=75, links=6, delay=0.002)
    await site.start()
    yield site
    await site.stop()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "crawl.db"


def rows(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Read a store directly (tests only)."""
    with sqlite3.connect(path) as db:
        return db.execute(sql, params).fetchall()
