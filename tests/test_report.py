"""`stats`, `report` and the event log, on the store of a real small crawl."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from crawler import Crawler, Settings
from crawler.store import SQLiteStore, Summary, store_in_use
from crawler.tools.report import render_html, stats_text, summary_dict
from tests.sites import GraphSite
from tests.test_e2e import spider_for

SETTINGS = Settings(concurrency=8, per_domain_concurrency=2, obey_robots=False, max_retries=0)
FIGURES = ("pages-per-second", "status-codes", "latency", "depths", "hosts", "failures")


@pytest.fixture
async def crawled(graph: GraphSite, tmp_path: Path) -> tuple[Path, GraphSite]:
    """A finished crawl of the graph site with one broken page, and its event log."""
    graph.broken.add(graph.url(1, 5))
    store = tmp_path / "graph.db"
    crawler = Crawler(
        spider_for(graph), SETTINGS, store_path=store, events=tmp_path / "events.jsonl"
    )
    stats = await crawler.run()
    assert stats.ended == "complete"
    return store, graph


async def summary_of(path: Path) -> Summary:
    store = await SQLiteStore.open_readonly(path)
    try:
        return await store.summary()
    finally:
        await store.close()


async def test_the_summary_adds_up(crawled: tuple[Path, GraphSite]) -> None:
    path, graph = crawled
    s = await summary_of(path)
    pages = len(graph.all_urls())
    assert (s.counts.done, s.counts.failed, s.counts.queued) == (pages - 1, 1, 0)
    assert s.counts.items == pages - 1
    assert s.statuses == {200: pages - 1, 500: 1}
    assert s.errors == {"http_status": 1}
    assert sum(s.depths.values()) == pages
    assert sum(s.latencies) == pages  # every fetch was timed
    assert sum(done + failed for _, done, failed in s.timeline) == pages
    assert {h.host for h in s.hosts} == set(graph.hosts)
    assert sum(h.done for h in s.hosts) == pages - 1
    by_host = {h.host: h for h in s.hosts}
    assert by_host[graph.hosts[1]].failed == 1
    assert all(h.mean_latency and h.mean_latency > 0 for h in s.hosts)
    assert s.bytes == sum(h.bytes for h in s.hosts) > 0


async def test_stats_text_and_json(crawled: tuple[Path, GraphSite]) -> None:
    path, graph = crawled
    s = await summary_of(path)
    pages = len(graph.all_urls())
    text = stats_text(s, running=False, now=time.time())
    assert "crawl not running" in text
    assert f"URLs: done {pages - 1}  failed 1  queued 0" in text
    assert "status codes: 200: " in text
    assert "500: 1" in text
    assert "failures: http_status: 1" in text
    data = json.loads(json.dumps(summary_dict(s, running=False, now=time.time())))
    assert data["totals"]["done"] == pages - 1
    assert data["statuses"] == {"200": pages - 1, "500": 1}
    assert len(data["hosts"]) == len(graph.hosts)


class _Page(HTMLParser):
    """Collects the figures (and the SVG shapes in each) and the embedded data."""

    def __init__(self) -> None:
        super().__init__()
        self.figure: str | None = None
        self.shapes: Counter[str] = Counter()
        self.in_data = False
        self.data = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "figure":
            self.figure = attributes.get("id")
        elif tag in ("rect", "polyline") and self.figure:
            self.shapes[self.figure] += 1
        elif tag == "script":
            assert attributes.get("type") == "application/json"  # no code runs in the report
            self.in_data = attributes.get("id") == "report-data"

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self.figure = None
        elif tag == "script":
            self.in_data = False

    def handle_data(self, data: str) -> None:
        if self.in_data:
            self.data += data


async def test_the_report_is_self_contained_html_with_its_charts_data(
    crawled: tuple[Path, GraphSite],
) -> None:
    path, graph = crawled
    s = await summary_of(path)
    page = render_html(s, store=str(path), running=False, now=time.time())
    assert "http://" not in page.split('id="report-data"')[0].replace(str(path), "")
    assert "<link" not in page
    assert "src=" not in page
    parsed = _Page()
    parsed.feed(page)
    for figure in FIGURES:
        assert parsed.shapes[figure] > 0, figure
    data = json.loads(parsed.data)
    assert data["totals"]["done"] == len(graph.all_urls()) - 1
    assert sum(data["latency_histogram"]["counts"]) == len(graph.all_urls())
    assert sum(p["done"] + p["failed"] for p in data["timeline"]["points"]) == len(graph.all_urls())


async def test_the_event_log_matches_the_store(crawled: tuple[Path, GraphSite]) -> None:
    path, graph = crawled
    events = [json.loads(line) for line in (path.parent / "events.jsonl").read_text().splitlines()]
    kinds = Counter(e["event"] for e in events)
    assert kinds == {"start": 1, "page": len(graph.all_urls()) - 1, "failed": 1, "end": 1}
    failed = next(e for e in events if e["event"] == "failed")
    assert (failed["url"], failed["status"], failed["error"]) == (
        graph.url(1, 5),
        500,
        "http_status",
    )
    page = next(e for e in events if e["event"] == "page")
    assert page["bytes"] > 0
    assert page["latency"] > 0
    assert page["status"] == 200
    assert events[-1]["event"] == "end"
    assert events[-1]["ended"] == "complete"


async def test_a_store_in_use_is_reported_running(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    assert not store_in_use(path)
    store = await SQLiteStore.open(path, "s")
    try:
        assert store_in_use(path)
    finally:
        await store.close()
    assert not store_in_use(path)


def _run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return _run(sys.executable, "-m", "crawler", *args, cwd=cwd)


async def test_the_stats_and_report_commands(crawled: tuple[Path, GraphSite]) -> None:
    path, graph = crawled
    text = run_cli("stats", "--store", str(path), cwd=path.parent)
    assert text.returncode == 0, text.stderr
    assert f"done {len(graph.all_urls()) - 1}" in text.stdout
    machine = run_cli("stats", "--store", str(path), "--json", cwd=path.parent)
    assert json.loads(machine.stdout)["totals"]["failed"] == 1
    report = run_cli("report", "--store", str(path), "-o", "report.html", cwd=path.parent)
    assert report.returncode == 0, report.stderr
    assert (path.parent / "report.html").read_text().startswith("<!DOCTYPE html>")
    wrong = run_cli("report", "--store", str(path), "-o", "report.pdf", cwd=path.parent)
    assert (wrong.returncode, wrong.stderr.strip()) == (
        2,
        "error: cannot write report.pdf: the report is an .html file",
    )
    missing = run_cli("stats", "--store", "nothing.db", cwd=path.parent)
    assert (missing.returncode, missing.stderr.strip()) == (2, "error: no store at nothing.db")


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed")
async def test_the_report_renders_in_a_real_browser(crawled: tuple[Path, GraphSite]) -> None:
    path, _ = crawled
    s = await summary_of(path)
    report = path.parent / "report.html"
    report.write_text(render_html(s, store=str(path), running=False, now=time.time()))
    browser = [
        str(_chromium()),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={path.parent / 'chromium-profile'}",
    ]
    dom = _run(*browser, "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    parsed = _Page()
    parsed.feed(dom.stdout)  # the DOM the browser built: every chart is in it
    for figure in FIGURES:
        assert parsed.shapes[figure] > 0, figure
    shot = path.parent / "report.png"
    drawn = _run(*browser, f"--screenshot={shot}", "--window-size=1200,1400", report.as_uri())
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # drawn, not a blank page


def test_dropped_items_and_spider_stats_in_stats_and_the_report() -> None:
    from crawler.records import LATENCY_BOUNDS, Counts

    summary = Summary(
        counts=Counts(0, 0, 10, 0, 7, 10),
        hosts=[],
        statuses={200: 10},
        errors={},
        depths={0: 10},
        latencies=[0] * (len(LATENCY_BOUNDS) + 1),
        timeline=[],
        bucket=1.0,
        first=None,
        last=None,
        bytes=0,
        counters={"dropped:duplicate": 2, "dropped:Book.price: bad": 1, "stat:ban pages": 4},
    )
    data = summary_dict(summary, running=False, now=0.0)
    assert data["dropped_items"] == {"duplicate": 2, "Book.price: bad": 1}
    assert data["stats"] == {"ban pages": 4}
    text = stats_text(summary, running=False, now=0.0)
    assert "items dropped (3): duplicate: 2  Book.price: bad: 1" in text
    assert "spider stats: ban pages: 4" in text
    page = render_html(summary, store="x.db", running=False, now=0.0)
    assert "<h2>Items dropped</h2>" in page
    assert "<td>Book.price: bad</td>" in page
    assert "<h2>Spider stats</h2>" in page
