"""Rendering's price: the same pages crawled plain and rendered in the headless browser at
browser_concurrency 1, 4 and 8, in one run, on one nginx site.

    python benchmarks/render.py [--pages 300] [--concurrency 1,4,8]

The site (127.0.0.2, static files served by nginx) has `pages` pages, each linking to the next
five in its HTML, so that a plain crawl reaches the same pages, and each built like a
JavaScript-made page: an external script (/app.js) fetches the page's JSON (/api/<n>.json)
and writes its title, price and description into the DOM, then marks it ready. A rendered
page costs three requests (the page, the script, the JSON); the spider waits for the ready
mark (render_wait) and yields the title the script wrote.

Each run is `python -m crawler run benchmarks/render_spider.py` in a child process, with
per_domain_concurrency=8 so that one host can keep 8 pages rendering. Reported: wall time,
pages/s, the CPU of the whole process tree (the crawler, Playwright's driver and Chromium,
from wait4), and the peak memory of that tree: the sum of its processes' proportional set
sizes (PSS, so pages Chromium's processes share are counted once), sampled every 250 ms, and
the peak RSS of its largest process (from wait4).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchsite import find_nginx, free_port, nginx_serving  # noqa: E402

HOST = "127.0.0.2"

APP_JS = b"""
const n = document.body.dataset.page;
fetch("/api/" + n + ".json").then(r => r.json()).then(item => {
  document.querySelector("h1").textContent = item.title;
  document.querySelector(".price").textContent = item.price;
  document.querySelector(".description").textContent = item.description;
  document.body.insertAdjacentHTML("beforeend", '<div id="ready"></div>');
});
"""


def generate(root: Path, pages: int) -> None:
    """The site's files under root/<HOST>/."""
    site = root / HOST
    (site / "p").mkdir(parents=True)
    (site / "api").mkdir()
    (site / "robots.txt").write_bytes(b"User-agent: *\nAllow: /\n")
    (site / "app.js").write_bytes(APP_JS)
    words = " ".join(f"word{i}" for i in range(300))  # ~3 KB of description
    for n in range(pages):
        links = "".join(
            f'<li><a href="/p/{(n + k) % pages}.html">page {(n + k) % pages}</a></li>'
            for k in range(1, 6)
        )
        (site / "p" / f"{n}.html").write_text(
            f'<!doctype html><html><head><title>page {n}</title></head><body data-page="{n}">'
            f'<h1></h1><span class="price"></span><p class="description"></p><ul>{links}</ul>'
            '<script src="/app.js"></script></body></html>'
        )
        (site / "api" / f"{n}.json").write_text(
            json.dumps({"title": f"Item {n}", "price": f"{n * 1.5:.2f}", "description": words})
        )


@dataclass
class Run:
    name: str
    pages: int
    items: int
    seconds: float
    cpu: float
    peak_pss: int  # bytes, the whole tree
    largest_rss: int  # bytes, the largest process of the tree

    @property
    def rate(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0


def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [pid], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _pss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


def crawl(name: str, start: str, store: Path, *settings: str, render: bool = False) -> Run:
    argv = [
        sys.executable,
        "-m",
        "crawler",
        "run",
        str(HERE / "render_spider.py"),
        "--store",
        str(store),
        "-o",
        str(store.with_suffix(".jsonl")),
        "-a",
        f"start_urls={start}",
        "-a",
        f"render={render}",
        "-s",
        "per_domain_concurrency=8",
        *[arg for setting in settings for arg in ("-s", setting)],
    ]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.25):
            peak = max(peak, _pss(_tree(proc.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    err = proc.stderr.read().decode() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name}: failed\n{err[-3000:]}")
    items = [json.loads(line) for line in store.with_suffix(".jsonl").read_text().splitlines()]
    titled = sum(1 for item in items if item["title"])
    return Run(
        name,
        len(items),
        titled,
        seconds,
        usage.ru_utime + usage.ru_stime,
        peak,
        usage.ru_maxrss * 1024,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--concurrency", default="1,4,8", help="browser_concurrency values")
    args = parser.parse_args()
    nginx = find_nginx()
    if nginx is None:
        raise SystemExit("this benchmark needs nginx (apt-get install nginx-light)")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        port = free_port()
        generate(root, args.pages)
        with nginx_serving(root, [HOST], port, nginx):
            start = f"http://{HOST}:{port}/p/0.html"
            print(f"site: {args.pages} pages on {HOST}, served by nginx")
            runs.append(crawl("plain", start, root / "plain.db"))
            for n in [int(c) for c in args.concurrency.split(",")]:
                name = f"rendered, browser_concurrency {n}"
                settings = ("render_wait=#ready", f"browser_concurrency={n}")
                runs.append(crawl(name, start, root / f"render{n}.db", *settings, render=True))
    plain = runs[0]
    print(
        "| run | pages | items with a title | seconds | pages/s | vs plain | CPU s (tree) |"
        " CPU ms/page | peak PSS (tree) | largest process peak RSS |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(
            f"| {r.name} | {r.pages} | {r.items} | {r.seconds:.1f} | {r.rate:.1f} |"
            f" {r.rate / plain.rate:.3f}x | {r.cpu:.1f} | {1000 * r.cpu / max(r.pages, 1):.1f} |"
            f" {r.peak_pss / 2**20:.0f} MiB | {r.largest_rss / 2**20:.0f} MiB |"
        )


if __name__ == "__main__":
    main()
