"""What a crawl did, from its store: the `stats` text and JSON, and the `report` HTML page.

The report is one self-contained file: inline SVG charts and CSS, no script or font to fetch,
and the data behind every chart embedded as JSON (`<script type="application/json"
id="report-data">`) for tools. Nothing here writes to the store.
"""

from __future__ import annotations

import datetime
import html
import json
import math
from typing import Any

from ..net.politeness import Circuit, host_health
from ..net.proxies import PROXY
from ..records import LATENCY_BOUNDS, ErrorKind, HostSummary, Summary
from ..stats import BACKEND, CACHE_HITS, DUPLICATES, RENDER, REVISIT
from ..stats import split as split_counters

#: Hosts shown in per-host tables and charts.
TOP_HOSTS = 20


def health(host: HostSummary, now: float) -> str:
    """A host's health and why (see politeness.host_health)."""
    state, why = host_health(host.politeness, now)
    return f"{state}: {why}" if why else str(state)


def circuit(host: HostSummary, now: float) -> str:
    """The circuit breaker's state for a host: closed, open (for how long), or given up."""
    open_until = host.politeness.open_until if host.politeness else 0.0
    if math.isinf(open_until):
        return Circuit.GIVEN_UP
    if open_until > now:
        return f"{Circuit.OPEN} {open_until - now:.0f} s"
    return Circuit.CLOSED


def retry_after_until(host: HostSummary, now: float) -> float | None:
    """Until when a Retry-After holds the host back, if it still does."""
    not_before = host.politeness.not_before if host.politeness else 0.0
    return not_before if not_before > now else None


def latency_labels() -> list[str]:
    """ "<50ms", "<100ms", ... and "≥30s": the latency histogram's buckets."""
    short = [_seconds(bound).replace(" ", "") for bound in LATENCY_BOUNDS]
    return [f"<{label}" for label in short] + [f"≥{short[-1]}"]


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:g} s"


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def summary_dict(summary: Summary, *, running: bool, now: float) -> dict[str, Any]:
    """The summary as plain JSON-ready data (`stats --json`, and the report's embedded data)."""
    c = summary.counts
    elapsed = (summary.last or 0) - (summary.first or 0)
    own, dropped = split_counters(summary.counters)
    return {
        "running": running,
        "totals": {
            "queued": c.queued,
            "in_flight": c.leased,
            "done": c.done,
            # the failures ledger less the URLs robots.txt disallowed (skipped, not failed)
            "failed": c.failed - summary.errors.get(ErrorKind.ROBOTS_DISALLOWED, 0),
            "robots_disallowed": summary.errors.get(ErrorKind.ROBOTS_DISALLOWED, 0),
            "items": c.items,
            "fetched": c.fetched,  # done or failed after a request went out: what max_pages counts
            "bytes": summary.bytes,
        },
        "first_page_at": summary.first,
        "last_page_at": summary.last,
        "pages_per_second": (c.done + c.failed) / elapsed if elapsed > 0 else None,
        "statuses": {str(k): v for k, v in summary.statuses.items()},
        "errors": summary.errors,
        "depths": {str(k): v for k, v in summary.depths.items()},
        "latency_histogram": {
            "bounds_seconds": list(LATENCY_BOUNDS),
            "labels": latency_labels(),
            "counts": summary.latencies,
        },
        "timeline": {
            "bucket_seconds": summary.bucket,
            "points": [
                {"start": start, "done": done, "failed": failed}
                for start, done, failed in summary.timeline
            ],
        },
        "hosts": [
            {
                "host": h.host,
                "queued": h.queued,
                "in_flight": h.leased,
                "done": h.done,
                "failed": h.failed,
                "items": h.items,
                "bytes": h.bytes,
                "mean_latency": h.mean_latency,
                "max_latency": h.max_latency,
                "circuit": circuit(h, now),
                "health": host_health(h.politeness, now)[0].value,
                "health_why": host_health(h.politeness, now)[1],
                "retry_after_until": retry_after_until(h, now),
            }
            for h in summary.hosts
        ],
        "workers": [
            {
                "id": w.id,
                "machine": w.machine,
                "pid": w.pid,
                "pages": w.pages,
                "pages_per_second": w.rate,
                "last_seen": w.seen,
                "alive": w.alive,
            }
            for w in summary.workers
        ],
        "stats": own,
        "dropped_items": dropped,
        "cached": summary.counters.get(CACHE_HITS, 0),
        "duplicates": {
            kind: summary.counters.get(DUPLICATES + kind, 0)
            for kind in ("exact", "near", "unfollowed")
        },
        "revisits": {
            kind: summary.counters.get(REVISIT + kind, 0)
            for kind in ("unchanged", "changed", "gone")
        },
        "rendered": {
            kind: summary.counters.get(RENDER + kind, 0)
            for kind in ("pages", "requests", "blocked", "skipped", "failed")
        },
        # requests through each proxy and those it failed (the page's host never asked)
        "proxies": _requests_by(PROXY, summary.counters),
        # requests by fetch backend other than the default, and those that failed
        "backends": _requests_by(BACKEND, summary.counters),
    }


def _requests_by(prefix: str, counters: dict[str, int]) -> dict[str, dict[str, int]]:
    """The counters "<prefix>requests:<name>" and "<prefix>failed:<name>", by name."""
    found: dict[str, dict[str, int]] = {}
    for key, n in counters.items():
        if key.startswith(prefix):
            what, _, name = key[len(prefix) :].partition(":")
            found.setdefault(name, {"requests": 0, "failed": 0})[what] = n
    return dict(sorted(found.items()))


def _worker_rows(summary: Summary, now: float) -> list[tuple[str, ...]]:
    return [
        (
            w.id,
            w.machine,
            str(w.pid),
            str(w.pages),
            f"{w.rate:.1f}",
            f"{max(now - w.seen, 0):.0f} s ago" + ("" if w.alive else " (gone)"),
        )
        for w in summary.workers
    ]


_WORKER_HEADER = ("worker", "machine", "pid", "pages", "pages/s", "last seen")


def stats_text(summary: Summary, *, running: bool, now: float) -> str:
    """The human summary printed by `python -m crawler stats`."""
    data = summary_dict(summary, running=running, now=now)
    t = data["totals"]
    rate = data["pages_per_second"]
    lines = [
        f"crawl {'running' if running else 'not running'}; pages from {_when(summary.first)} "
        f"to {_when(summary.last)}" + (f" ({rate:.1f} pages/s)" if rate else ""),
        f"URLs: done {t['done']}  failed {t['failed']}  "
        + (f"disallowed by robots.txt {t['robots_disallowed']}  " if t["robots_disallowed"] else "")
        + f"queued {t['queued']}  in flight {t['in_flight']}; items {t['items']}; "
        f"{t['fetched']} pages fetched ({_size(t['bytes'])})",
        "(a redirect marks its target URL done too: URLs done may exceed pages fetched)"
        if t["done"] > t["fetched"]
        else "",
    ]
    lines = [line for line in lines if line]
    if summary.statuses:
        lines.append("status codes: " + "  ".join(f"{k}: {v}" for k, v in summary.statuses.items()))
    if summary.errors:
        lines.append("failures: " + "  ".join(f"{k}: {v}" for k, v in summary.errors.items()))
    if data["dropped_items"]:
        dropped = data["dropped_items"]
        lines.append(
            f"items dropped ({sum(dropped.values())}): "
            + "  ".join(f"{k}: {v}" for k, v in dropped.items())
        )
    if any(data["duplicates"].values()):
        d = data["duplicates"]
        lines.append(
            f"duplicate pages: {d['exact']} exact, {d['near']} near"
            + (f"; {d['unfollowed']} requests from them not queued" if d["unfollowed"] else "")
        )
    if any(data["revisits"].values()):
        lines.append("revisits: " + "  ".join(f"{k}: {v}" for k, v in data["revisits"].items()))
    if data["cached"]:
        lines.append(f"answered by the HTTP cache: {data['cached']} pages")
    rendered = data["rendered"]
    if rendered["pages"]:
        lines.append(
            f"rendered: {rendered['pages']} pages, whose requests: {rendered['requests']} made, "
            f"{rendered['blocked']} refused, {rendered['skipped']} not loaded (block_resources), "
            f"{rendered['failed']} failed"
        )
    for key, label in (("proxies", "proxies"), ("backends", "fetch backends")):
        if data[key]:
            lines.append(
                f"{label}: "
                + "  ".join(
                    f"{name} {n['requests']} requests, {n['failed']} failed"
                    for name, n in data[key].items()
                )
            )
    if data["stats"]:
        lines.append("spider stats: " + "  ".join(f"{k}: {v}" for k, v in data["stats"].items()))
    hosts = summary.hosts[:TOP_HOSTS]
    if hosts:
        lines.append("")
        lines.append(_host_table(hosts, now))
        if len(summary.hosts) > TOP_HOSTS:
            lines.append(f"... and {len(summary.hosts) - TOP_HOSTS} more hosts (see --json)")
    points = _rates(summary)
    if points:
        lines.append("")
        lines.append(f"pages/s per {summary.bucket:g} s: " + _sparkline([r for _, r in points]))
    if summary.workers:
        rows = [_WORKER_HEADER, *_worker_rows(summary, now)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(_WORKER_HEADER))]
        lines.append("")
        lines.extend(
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
        )
    return "\n".join(lines)


def _host_table(hosts: list[HostSummary], now: float) -> str:
    header = ("host", "queued", "done", "failed", "items", "mean latency", "health")
    rows = [header] + [
        (
            h.host,
            str(h.queued),
            str(h.done),
            str(h.failed),
            str(h.items),
            _seconds(h.mean_latency) if h.mean_latency is not None else "-",
            health(h, now),
        )
        for h in hosts
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    )


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    size = count / 1024
    for unit in ("KB", "MB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def _rates(summary: Summary) -> list[tuple[float, float]]:
    """(bucket start, pages/s) for every bucket from the first to the last, gaps as 0."""
    if not summary.timeline or summary.first is None:
        return []
    by_start = {round((s - summary.first) / summary.bucket): d + f for s, d, f in summary.timeline}
    last = max(by_start)
    return [
        (summary.first + n * summary.bucket, by_start.get(n, 0) / summary.bucket)
        for n in range(last + 1)
    ]


def _sparkline(values: list[float]) -> str:
    bars = " ▁▂▃▄▅▆▇█"
    top = max(values) or 1.0
    return "".join(bars[round(v / top * (len(bars) - 1))] for v in values[-60:])


# -- the HTML report -------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1100px;color:#1d2433;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.15em;margin:1.6em 0 .5em}
.muted{color:#667}.cards{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}
.card{border:1px solid #dde;border-radius:8px;padding:.6em 1em;min-width:7em}
.card b{display:block;font-size:1.5em}.grid{display:grid;grid-template-columns:1fr 1fr;gap:1.5em}
figure{margin:0}figcaption{font-weight:600;margin-bottom:.3em}
table{border-collapse:collapse;width:100%}td,th{padding:.25em .6em;border-bottom:1px solid #eef;
text-align:right}td:first-child,th:first-child{text-align:left}
svg text{font:11px system-ui,sans-serif;fill:#445}
@media (max-width:800px){.grid{grid-template-columns:1fr}}
"""

_BLUE, _RED, _GREY = "#3b6fd8", "#d84a3b", "#c9cfdb"


def render_html(summary: Summary, *, store: str, running: bool, now: float) -> str:
    """The report page for `summary` (of the store at `store`)."""
    data = summary_dict(summary, running=running, now=now)
    own, dropped = data["stats"], data["dropped_items"]
    t = data["totals"]
    rate = data["pages_per_second"]
    cards = [
        ("pages done", t["done"]),
        ("failed", t["failed"]),
        ("queued", t["queued"]),
        ("items", t["items"]),
        ("fetched", _size(t["bytes"])),
        ("pages/s", f"{rate:.1f}" if rate else "-"),
    ]
    rates = _rates(summary)
    hosts = summary.hosts[:TOP_HOSTS]
    slow = sorted(
        (h for h in summary.hosts if h.mean_latency is not None),
        key=lambda h: h.mean_latency or 0.0,
        reverse=True,
    )[:TOP_HOSTS]
    failing = sorted((h for h in summary.hosts if h.failed), key=lambda h: -h.failed)[:TOP_HOSTS]
    figures = [
        (
            "pages-per-second",
            f"Pages per second ({summary.bucket:g} s buckets)",
            _line_chart(rates),
        ),
        (
            "status-codes",
            "Status codes",
            _bar_chart([(str(k), v) for k, v in summary.statuses.items()], _status_color),
        ),
        (
            "latency",
            "Fetch latency",
            _bar_chart(list(zip(latency_labels(), summary.latencies, strict=True))),
        ),
        (
            "depths",
            "Pages by depth",
            _bar_chart([(str(k), v) for k, v in summary.depths.items()]),
        ),
        ("hosts", f"Pages per host (top {TOP_HOSTS})", _host_bars(hosts)),
        (
            "failures",
            "Failures by kind",
            _bar_chart(list(summary.errors.items()), lambda _: _RED),
        ),
    ]
    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Crawl report: {html.escape(store)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Crawl report</h1><p class='muted'>{html.escape(store)} · "
        f"{'running' if running else 'not running'} · pages from {_when(summary.first)} to "
        f"{_when(summary.last)} · report made {_when(now)}</p>",
        "<div class='cards'>"
        + "".join(f"<div class='card'><b>{v}</b>{html.escape(k)}</div>" for k, v in cards)
        + "</div>",
        "<div class='grid'>",
        *(
            f"<figure id='{key}'><figcaption>{html.escape(caption)}</figcaption>{svg}</figure>"
            for key, caption, svg in figures
        ),
        "</div>",
        "<h2>Slowest hosts</h2>",
        _html_table(
            ("host", "mean latency", "max latency", "done", "failed"),
            [
                (
                    h.host,
                    _seconds(h.mean_latency or 0),
                    _seconds(h.max_latency or 0),
                    h.done,
                    h.failed,
                )
                for h in slow
            ],
            "slowest-hosts",
        ),
        *(
            ["<h2>Workers</h2>", _html_table(_WORKER_HEADER, _worker_rows(summary, now), "workers")]
            if summary.workers
            else []
        ),
        *(
            [
                "<h2>Items dropped</h2>",
                _html_table(("reason", "items"), list(dropped.items()), "dropped-items"),
            ]
            if dropped
            else []
        ),
        *(
            [
                "<h2>Spider stats</h2>",
                _html_table(("counter", "value"), list(own.items()), "spider-stats"),
            ]
            if own
            else []
        ),
        "<h2>Failing hosts</h2>",
        _html_table(
            ("host", "failed", "done", "health", "Retry-After until"),
            [
                (
                    h.host,
                    h.failed,
                    h.done,
                    health(h, now),
                    _when(retry_after_until(h, now)),
                )
                for h in failing
            ],
            "failing-hosts",
        ),
        '<script type="application/json" id="report-data">'
        + json.dumps(data).replace("</", "<\\/")
        + "</script>",
        "</body></html>",
    ]
    return "\n".join(body)


def _html_table(header: tuple[str, ...], rows: list[tuple[Any, ...]], key: str) -> str:
    if not rows:
        return f"<p id='{key}' class='muted'>none</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    cells = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table id='{key}'><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>"


def _status_color(label: str) -> str:
    return _BLUE if label.startswith(("2", "3")) else _RED


def _empty(width: int = 520, height: int = 220) -> str:
    return (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img">'
        f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">none</text></svg>'
    )


def _bar_chart(
    bars: list[tuple[str, int]], color: Any = lambda _: _BLUE, width: int = 520, height: int = 220
) -> str:
    """Vertical bars with their values; labels under them."""
    if not bars or not any(v for _, v in bars):
        return _empty(width, height)
    top = max(v for _, v in bars)
    left, bottom, right, head = 8, 36, 8, 18
    slot = min((width - left - right) / len(bars), 90.0)
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img">']
    for i, (label, value) in enumerate(bars):
        h = (height - bottom - head) * value / top
        x = left + i * slot + slot * 0.12
        y = height - bottom - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.76:.1f}" height="{h:.1f}" '
            f'fill="{color(label)}"><title>{html.escape(label)}: {value}</title></rect>'
            f'<text x="{x + slot * 0.38:.1f}" y="{y - 4:.1f}" text-anchor="middle">{value}</text>'
            f'<text x="{x + slot * 0.38:.1f}" y="{height - bottom + 14}" '
            f'text-anchor="middle">{html.escape(label[:14])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _line_chart(points: list[tuple[float, float]], width: int = 520, height: int = 220) -> str:
    """Pages/s over time, with the peak and the time axis' ends labelled."""
    if not points:
        return _empty(width, height)
    top = max(r for _, r in points) or 1.0
    left, bottom, right, head = 40, 30, 10, 14
    span = max(len(points) - 1, 1)
    xy = [
        (
            left + (width - left - right) * i / span,
            height - bottom - (height - bottom - head) * rate / top,
        )
        for i, (_, rate) in enumerate(points)
    ]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    area = f"{left},{height - bottom} {path} {xy[-1][0]:.1f},{height - bottom}"
    start = datetime.datetime.fromtimestamp(points[0][0]).strftime("%H:%M:%S")
    end = datetime.datetime.fromtimestamp(points[-1][0]).strftime("%H:%M:%S")
    return (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img">'
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" '
        f'stroke="{_GREY}"/><line x1="{left}" y1="{head}" x2="{left}" y2="{height - bottom}" '
        f'stroke="{_GREY}"/>'
        f'<polygon points="{area}" fill="{_BLUE}" fill-opacity="0.15"/>'
        f'<polyline points="{path}" fill="none" stroke="{_BLUE}" stroke-width="2"/>'
        f'<text x="{left - 4}" y="{head + 4}" text-anchor="end">{top:.0f}</text>'
        f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end">0</text>'
        f'<text x="{left}" y="{height - 10}">{start}</text>'
        f'<text x="{width - right}" y="{height - 10}" text-anchor="end">{end}</text></svg>'
    )


def _host_bars(hosts: list[HostSummary], width: int = 520) -> str:
    """Horizontal bars per host: done (blue) and failed (red), side by side."""
    if not hosts:
        return _empty(width)
    row, label_width = 18, 150
    height = row * len(hosts) + 8
    top = max(h.done + h.failed for h in hosts) or 1
    scale = (width - label_width - 50) / top
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img">']
    for i, h in enumerate(hosts):
        y = 4 + i * row
        done, failed = h.done * scale, h.failed * scale
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 12}" text-anchor="end">'
            f"{html.escape(h.host[:24])}</text>"
            f'<rect x="{label_width}" y="{y + 2}" width="{done:.1f}" height="{row - 5}" '
            f'fill="{_BLUE}"><title>{html.escape(h.host)}: {h.done} done</title></rect>'
            f'<rect x="{label_width + done:.1f}" y="{y + 2}" width="{failed:.1f}" '
            f'height="{row - 5}" fill="{_RED}"><title>{html.escape(h.host)}: {h.failed} failed'
            f"</title></rect>"
            f'<text x="{label_width + done + failed + 4:.1f}" y="{y + 12}">'
            f"{h.done + h.failed}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
