"""The live view and the progress lines, rendered from a given state (no crawl needed)."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from rich.console import Console

from crawler.crawl.progress import CrawlStats, HostProgress, Progress
from crawler.net.politeness import Circuit, HostHealth, Wait
from crawler.tools.display import Rates, eta, host_table, log_line, showing, summary_line


def progress(elapsed: float = 30.0, pages: int = 300, max_pages: int | None = None) -> Progress:
    run = CrawlStats(pages=pages, failed=4, retried=2, items=250)
    hosts = [
        HostProgress("busy.example", 4, 120, 200, 1, 0.0, 0.0, Circuit.CLOSED),
        HostProgress("slow.example", 1, 40, 60, 0, 2.0, 0.0, Circuit.CLOSED),
        HostProgress(
            "throttled.example",
            *(0, 15, 30, 3, 0.5, 95.0),
            Circuit.OPEN,
            Wait.CIRCUIT,
            HostHealth.OPEN,
            "4 failed in a row over 3 s, probe in 12 s",
        ),
        HostProgress("dead.example", 0, 0, 10, 12, 0.0, 0.0, Circuit.GIVEN_UP),
    ]
    return Progress(
        elapsed=elapsed,
        run=run,
        queued=175,
        done=300,
        failed=16,
        items=250,
        fetched=310,  # earlier runs included
        in_flight=5,
        max_pages=max_pages,
        hosts=hosts,
    )


def test_the_host_table_renders_a_given_state() -> None:
    console = Console(record=True, width=130, color_system=None)
    console.print(host_table(progress(), limit=3))
    lines = [line.rstrip() for line in console.export_text().splitlines()]
    assert lines == [
        "host               in flight  queued  done  failed  delay  waits               health",
        "busy.example               4     120   200       1      -  -                   ok",
        "slow.example               1      40    60       0  2.00s  -                   ok",
        "throttled.example          0      15    30       3  0.50s  1m35s circuit open  "
        "open: 4 failed in a row over 3 s, probe in 12 s",
        "                                                         1 more hosts",
    ]


def test_an_idle_crawl_says_what_it_waits_for_and_how_long() -> None:
    import dataclasses

    hosts = [
        HostProgress("a.example", 0, 3, 10, 1, 0.0, 28.0, Circuit.OPEN, Wait.CIRCUIT),
        HostProgress("b.example", 0, 2, 10, 0, 0.0, 4.5, Circuit.CLOSED, Wait.RETRY_AFTER),
        HostProgress("c.example", 0, 0, 10, 0, 5.0, 2.0, Circuit.CLOSED, Wait.CRAWL_DELAY),
    ]
    idle = dataclasses.replace(progress(), in_flight=0, queued=5, hosts=hosts)
    line = summary_line(idle, 0.0, 3.0)
    assert line.endswith("waiting 4.5s for b.example: Retry-After (+1 hosts waiting)")
    assert "waiting" not in summary_line(progress(), 0.0, 3.0)  # pages in flight: not idle


def test_the_summary_line_and_eta() -> None:
    p = progress(max_pages=1000)
    assert summary_line(p, 12.0, 10.0) == (
        "300 pages (310/1000 fetched)  12.0/s now  10.0/s avg  175 queued  4 failed  250 items  "
        "5 in flight  elapsed 30s  ETA 57s"
    )
    assert eta(p, 0.0) is None
    assert eta(progress(), 10.0) is None  # no max_pages, no ETA


def test_rates_now_follow_the_last_seconds_and_average_the_run() -> None:
    rates = Rates(window=5.0)
    assert rates.update(progress(elapsed=10.0, pages=100)) == (0.0, 10.0)
    current, average = rates.update(progress(elapsed=12.0, pages=140))
    assert (current, average) == (20.0, 140 / 12)
    rates.update(progress(elapsed=20.0, pages=150))
    current, _ = rates.update(progress(elapsed=22.0, pages=150))
    assert current == pytest.approx(0.0, abs=2.0)  # the 10-12 s burst no longer counts


def test_the_log_line_is_plain_text() -> None:
    line = log_line(progress(), 12.0, 10.0)
    assert "busiest: busy.example 4 in flight/120 queued" in line
    assert re.search(r"[\x00-\x1f\x7f]", line) is None


async def test_without_a_terminal_progress_is_logged_as_plain_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0
    enough = asyncio.Event()

    async def snapshot() -> Progress:
        nonlocal calls
        calls += 1
        if calls == 3:
            enough.set()
        return progress(elapsed=float(calls), pages=10 * calls)

    caplog.set_level(logging.INFO, logger="crawler")
    stream = _Capture()
    async with showing(snapshot, stream=stream, live=False, log_every=0.001):
        await enough.wait()
    lines = [r.getMessage() for r in caplog.records if "pages" in r.getMessage()]
    assert len(lines) >= 2
    assert all(re.search(r"[\x00-\x1f\x7f]", line) is None for line in lines)
    assert stream.text == ""  # nothing written behind the logger's back


class _Capture:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def test_the_spiders_counters_and_dropped_items_show_in_the_view_and_the_lines() -> None:
    import dataclasses

    p = dataclasses.replace(
        progress(), stats={"ban pages": 3}, dropped_items={"duplicate": 7, "invalid price": 2}
    )
    line = log_line(p, 12.0, 10.0)
    assert line.endswith("; ban pages 3; dropped 9 (duplicate 7, invalid price 2)")
    console = Console(record=True, width=120, color_system=None)
    from crawler.tools.display import render

    console.print(render(p, 12.0, 10.0))
    assert "ban pages 3; dropped 9 (duplicate 7, invalid price 2)" in console.export_text()
    assert "dropped" not in log_line(progress(), 12.0, 10.0)


def test_failing_proxies_show_in_the_view_and_the_lines() -> None:
    import dataclasses

    from crawler.net.proxies import ProxyStatus
    from crawler.tools.display import proxies_line

    proxies = [
        ProxyStatus("http://p1:3128", 12, 12, 28.0, "ConnectError: refused"),
        ProxyStatus("http://p2:3128", 80, 0, 0.0, None),
    ]
    p = dataclasses.replace(progress(), proxies=proxies)
    line = proxies_line(p)
    assert line == (
        "proxies: http://p1:3128 12 requests, 12 failed, resting 28s (last: ConnectError: "
        "refused); http://p2:3128 80 requests, 0 failed"
    )
    assert line in log_line(p, 1.0, 1.0)
    assert proxies_line(progress()) == ""
    healthy = dataclasses.replace(progress(), proxies=proxies[1:])
    assert "proxies" not in log_line(healthy, 1.0, 1.0)  # only failing proxies make noise


def test_a_broad_crawl_shows_its_hosts_in_memory_and_dns() -> None:
    import dataclasses

    from crawler.net.dns import DnsStats

    plain = summary_line(progress(), 0.0, 3.0)
    assert "evicted" not in plain
    assert "DNS" not in plain
    run = dataclasses.replace(
        progress().run, hosts_in_memory=1024, hosts_evicted=8000, dns=DnsStats(9000, 80000, 3)
    )
    line = summary_line(dataclasses.replace(progress(), run=run), 0.0, 3.0)
    assert "1024 hosts held at most, 8000 evicted" in line
    assert "9000 DNS lookups (3 failed)" in line
