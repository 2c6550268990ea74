"""Helpers shared by test modules."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from crawler import Crawler, CrawlStats, Settings, Spider
from crawler.clock import Clock
from crawler.store import Counts, Summary, open_readonly


class ManualClock(Clock):
    """A clock that stands still until a test moves it (`clock.t = ...`); waits are real."""

    def __init__(self, t: float) -> None:
        super().__init__()
        self.t = t

    def now(self) -> float:
        return self.t


Handler = Callable[[httpx.Request], httpx.Response]


async def public_resolver(host: str) -> list[str]:
    """Every made-up host of these tests resolves to one public address (never contacted)."""
    return ["93.184.215.14"]


def html(body: str) -> httpx.Response:
    return httpx.Response(200, html=f"<html><body>{body}</body></html>")


async def crawl(spider: Spider, handler: Handler, path: Path, **settings: Any) -> CrawlStats:
    options = {"obey_robots": False, "retry_backoff": 0.0, "concurrency": 4, **settings}
    crawler = Crawler(
        spider,
        Settings().merge(options),
        store_path=path,
        transport=httpx.MockTransport(handler),
        resolver=public_resolver,
    )
    return await crawler.run()


async def crawler_cli(*args: str, cwd: Path) -> tuple[int, str, str]:
    """`python -m crawler ARGS` in `cwd`, without blocking the test's event loop (its sites
    keep serving): the exit code, stdout and stderr. At most 120 s."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crawler",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode(), err.decode()


async def fetched_per_host(store: Any) -> dict[str, int]:
    """Pages fetched per host, for hosts with any, through the reader protocol."""
    totals = await store.host_totals()
    return {host: counts.fetched for host, counts in totals.items() if counts.fetched}


# -- a crawl's store, read through the reader protocol (what stats, export and report read) --


async def stored_items(path: Path | str) -> list[str]:
    """The store's items (JSON text), in commit order."""
    store = await open_readonly(path)
    try:
        return [item async for item in store.items()]
    finally:
        await store.close()


async def stored_counts(path: Path | str) -> Counts:
    store = await open_readonly(path)
    try:
        return await store.counts()
    finally:
        await store.close()


async def stored_failures(path: Path | str, error: str | None = None) -> list[dict[str, Any]]:
    """The failed requests (url, error, status, attempts, message), in discovery order."""
    store = await open_readonly(path)
    try:
        return [failure async for failure in store.failures(error=error)]
    finally:
        await store.close()


async def stored_summary(path: Path | str) -> Summary:
    store = await open_readonly(path)
    try:
        return await store.summary()
    finally:
        await store.close()
