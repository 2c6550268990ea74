"""What `run` shows while it works: a live view on a terminal, periodic log lines elsewhere.

The live view (rich) redraws a summary line and a table of the busiest hosts a few times a
second; log records print above it. When stderr is not a terminal (CI, a file, a pipe), a
plain line every `log_every` seconds says the same without any control characters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from ..crawl.progress import Progress
from ..net.politeness import HostHealth

#: Hosts shown in the live table.
TOP_HOSTS = 10
_HEALTH_STYLES = {
    HostHealth.OK: "green",
    HostHealth.SLOWED: "yellow",
    HostHealth.OPEN: "bold red",
    HostHealth.GIVEN_UP: "bold red",
}


class Rates:
    """Pages per second: now (over the last `window` seconds) and on average this run."""

    def __init__(self, window: float = 5.0) -> None:
        self._window = window
        self._samples: deque[tuple[float, int]] = deque()

    def update(self, progress: Progress) -> tuple[float, float]:
        now, pages = progress.elapsed, progress.run.pages
        self._samples.append((now, pages))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window:
            self._samples.popleft()
        then, before = self._samples[0]
        current = (pages - before) / (now - then) if now > then else 0.0
        average = pages / now if now > 0 else 0.0
        return current, average


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def eta(progress: Progress, rate: float) -> str | None:
    """Time left to reach max_pages at `rate`, when there is a max_pages."""
    if progress.max_pages is None or rate <= 0:
        return None
    left = max(progress.max_pages - progress.fetched, 0)
    return _duration(left / rate)


def summary_line(progress: Progress, current: float, average: float) -> str:
    run = progress.run
    parts = [
        f"{run.pages} pages",
        f"{current:.1f}/s now",
        f"{average:.1f}/s avg",
        f"{progress.queued} queued",
        f"{run.failed} failed",
        f"{run.items} items",
        f"{progress.in_flight} in flight",
        f"elapsed {_duration(progress.elapsed)}",
    ]
    if progress.max_pages is not None:
        parts[0] = f"{run.pages} pages ({progress.fetched}/{progress.max_pages} fetched)"
        left = eta(progress, current or average)
        if left is not None:
            parts.append(f"ETA {left}")
    if run.hosts_evicted:
        parts.append(f"{run.hosts_in_memory} hosts held at most, {run.hosts_evicted} evicted")
    if run.dns.lookups:
        parts.append(f"{run.dns.lookups} DNS lookups ({run.dns.failed} failed)")
    idle = waiting(progress)
    if idle is not None:
        parts.append(idle)
    return "  ".join(parts)


def waiting(progress: Progress) -> str | None:
    """While nothing is in flight but URLs are queued, what the crawl waits for: the host whose
    wait ends first, why (circuit open, Retry-After, Crawl-delay, rate limit, retries due
    later) and for how long."""
    if progress.in_flight or not progress.queued:
        return None
    hosts = [h for h in progress.hosts if h.queued and h.waiting_for is not None]
    if not hosts:
        return None
    first = min(hosts, key=lambda h: h.wait)
    more = f" (+{len(hosts) - 1} hosts waiting)" if len(hosts) > 1 else ""
    return f"waiting {_duration(first.wait)} for {first.host}: {first.waiting_for}{more}"


def host_table(progress: Progress, limit: int = TOP_HOSTS) -> Table:
    """The busiest hosts: in flight, queued, done, failed, pacing, what their next request
    waits for, and their health (ok, slowed, open, given up) and why."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name, justify in (
        ("host", "left"),
        ("in flight", "right"),
        ("queued", "right"),
        ("done", "right"),
        ("failed", "right"),
        ("delay", "right"),
        ("waits", "left"),
        ("health", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for h in progress.hosts[:limit]:
        health = Text(f"{h.health}: {h.why}" if h.why else h.health, style=_HEALTH_STYLES[h.health])
        table.add_row(
            h.host,
            str(h.in_flight),
            str(h.queued),
            str(h.done),
            Text(str(h.failed), style="red" if h.failed else ""),
            f"{h.delay:.2f}s" if h.delay else "-",
            f"{_duration(h.wait)} {h.waiting_for}" if h.waiting_for else "-",
            health,
        )
    if len(progress.hosts) > limit:
        table.caption = f"{len(progress.hosts) - limit} more hosts"
    return table


def worker_table(progress: Progress) -> Table:
    """The processes of a crawl on a shared store: pages, pages/s, when last heard of."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("worker", "machine", "pid", "pages", "pages/s", "last seen"):
        table.add_column(name)
    now = time.time()
    for w in progress.workers:
        table.add_row(
            w.id,
            w.machine,
            str(w.pid),
            str(w.pages),
            f"{w.rate:.1f}",
            Text(f"{max(now - w.seen, 0):.0f}s ago", style="" if w.alive else "red"),
        )
    return table


def render(progress: Progress, current: float, average: float) -> RenderableType:
    parts: list[RenderableType] = [
        Text(summary_line(progress, current, average), style="bold"),
        host_table(progress),
    ]
    if any(w.alive for w in progress.workers):
        parts.append(worker_table(progress))
    if progress.stats or progress.dropped_items:
        parts.append(Text(counters_line(progress), style="dim"))
    proxies = proxies_line(progress)
    if proxies:
        failing = any(p.failed for p in progress.proxies)
        parts.append(Text(proxies, style="red" if failing else "dim"))
    return Group(*parts)


def proxies_line(progress: Progress) -> str:
    """The crawl's proxies, one by one: requests, failures and rest (empty without proxies)."""
    parts = []
    for p in progress.proxies:
        part = f"{p.proxy} {p.requests} requests, {p.failed} failed"
        if p.resting:
            part += f", resting {_duration(p.resting)}"
        if p.failed and p.last_error:
            part += f" (last: {p.last_error})"
        parts.append(part)
    return "proxies: " + "; ".join(parts) if parts else ""


def counters_line(progress: Progress) -> str:
    """The spider's own counters and the items dropped, on one line (empty when none)."""
    parts = [f"{name} {value}" for name, value in progress.stats.items()]
    if progress.dropped_items:
        reasons = ", ".join(f"{k} {v}" for k, v in list(progress.dropped_items.items())[:3])
        parts.append(f"dropped {sum(progress.dropped_items.values())} ({reasons})")
    return "; ".join(parts)


def log_line(progress: Progress, current: float, average: float) -> str:
    """The plain-text progress line (no control characters), with the three busiest hosts."""
    busiest = ", ".join(
        f"{h.host} {h.in_flight} in flight/{h.queued} queued" for h in progress.hosts[:3]
    )
    counters = counters_line(progress)
    proxies = proxies_line(progress) if any(p.failed for p in progress.proxies) else ""
    return (
        summary_line(progress, current, average)
        + (f"; busiest: {busiest}" if busiest else "")
        + (f"; {counters}" if counters else "")
        + (f"; {proxies}" if proxies else "")
    )


@contextlib.asynccontextmanager
async def showing(
    progress: Callable[[], Awaitable[Progress | None]],
    *,
    stream: TextIO,
    live: bool,
    log_every: float = 10.0,
    refresh: float = 0.5,
) -> AsyncIterator[None]:
    """Show `progress()` while the body runs: live on a terminal, else a log line now and
    then. Log records go above the live view while it is up; the view goes away at the end
    (the caller prints its summary)."""
    done = asyncio.Event()
    rates = Rates()
    log = logging.getLogger("crawler")

    async def ticks(every: float) -> AsyncIterator[Progress]:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), every)  # the display's refresh rate
            snapshot = await progress()
            if snapshot is not None:
                yield snapshot

    async def show_live(view: Live) -> None:
        async for snapshot in ticks(refresh):
            view.update(render(snapshot, *rates.update(snapshot)), refresh=True)

    async def show_lines() -> None:
        async for snapshot in ticks(log_every):
            if not done.is_set():
                log.info("%s", log_line(snapshot, *rates.update(snapshot)))

    if not live:
        task = asyncio.create_task(show_lines())
        try:
            yield
        finally:
            done.set()
            await task
        return
    console = Console(file=stream)
    root = logging.getLogger()
    handlers = root.handlers[:]
    rich_handler = RichHandler(console=console, show_path=False, log_time_format="%H:%M:%S")
    rich_handler.setLevel(min((h.level for h in handlers), default=logging.INFO))
    with Live(console=console, transient=True, auto_refresh=False) as view:
        root.handlers = [rich_handler]
        task = asyncio.create_task(show_live(view))
        try:
            yield
        finally:
            done.set()
            await task
            root.handlers = handlers
