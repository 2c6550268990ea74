"""Crawl one local multi-host site with ours, a minimal aiohttp+selectolax crawler, Scrapy and
Crawlee, one after another, and print pages/s, CPU seconds and peak RSS side by side.

    python benchmarks/compare.py [--hosts 10] [--pages 500] [--peers-python PATH]

Peers are optional and live in their own environment, never in ours:

    python -m venv .peers && .peers/bin/pip install scrapy "crawlee[parsel]"
    python benchmarks/compare.py --peers-python .peers/bin/python

The site is static (~14 KB pages, ~42 links each) and served by nginx when it is installed
(apt-get install nginx-light), else by one Python http.server process per host. Every crawler
runs as a child process, measured with wait4: wall time, user+system CPU, peak RSS.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchsite import crawl_argv, measure, serve  # noqa: E402


@dataclass
class Result:
    name: str
    pages: int
    seconds: float
    cpu: float
    rss_mb: float

    @property
    def rate(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0


def run(name: str, argv: list[str], env: dict[str, str], count: callable) -> Result | None:  # type: ignore[valid-type]
    done = measure(argv, env)
    if done.code != 0:
        print(f"{name}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return Result(name, count(done.stdout), done.seconds, done.cpu, done.rss_mb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--pages", type=int, default=500, help="pages per host")
    parser.add_argument("--peers-python", default=None, help="a Python with scrapy and crawlee")
    parser.add_argument("--only", default="ours,minimal,scrapy,crawlee")
    args = parser.parse_args()
    wanted = args.only.split(",")
    results: list[Result] = []
    with serve(args.hosts, args.pages) as (starts, server), tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
        if "ours" in wanted:
            store = work / "ours.db"
            argv = crawl_argv(starts, store)

            def ours_pages(_: str) -> int:
                with sqlite3.connect(store) as db:
                    return int(
                        db.execute("SELECT COUNT(*) FROM requests WHERE state = 2").fetchone()[0]
                    )

            results.append(run("crawler (ours)", argv, env, ours_pages))
        if "minimal" in wanted:
            argv = [sys.executable, str(HERE / "minimal.py"), *starts]
            results.append(
                run(
                    "minimal aiohttp+selectolax",
                    argv,
                    env,
                    lambda out: int(out.split("pages=")[1].split()[0]),
                )
            )
        peers = args.peers_python
        if peers and "scrapy" in wanted:
            feed = work / "scrapy.jsonl"
            argv = [
                peers,
                "-m",
                "scrapy",
                "runspider",
                str(HERE / "peers" / "scrapy_bench.py"),
                "-a",
                f"start_urls={','.join(starts)}",
                "-O",
                str(feed),
            ]
            results.append(
                run("scrapy", argv, {**os.environ}, lambda _: len(feed.read_text().splitlines()))
            )
        if peers and "crawlee" in wanted:
            storage = work / "crawlee"
            argv = [peers, str(HERE / "peers" / "crawlee_bench.py"), *starts]
            cenv = {**os.environ, "CRAWLEE_STORAGE_DIR": str(storage)}
            results.append(
                run(
                    "crawlee",
                    argv,
                    cenv,
                    lambda _: len(
                        [
                            p
                            for p in (storage / "datasets" / "default").glob("*.json")
                            if p.name != "__metadata__.json"
                        ]
                    ),
                )
            )
    done = [r for r in results if r is not None]
    ours = next((r for r in done if r.name.startswith("crawler")), None)
    print(
        f"\n{args.hosts} hosts x {args.pages} pages, served by {server}; "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}\n"
    )
    print("| crawler | pages | seconds | pages/s | CPU s | peak RSS MB | ours vs it |")
    print("|---|---|---|---|---|---|---|")
    for r in done:
        ratio = f"{ours.rate / r.rate:.2f}x" if ours and r.rate and r is not ours else "-"
        print(
            f"| {r.name} | {r.pages} | {r.seconds:.1f} | {r.rate:.0f} | {r.cpu:.1f} | "
            f"{r.rss_mb:.0f} | {ratio} |"
        )


if __name__ == "__main__":
    main()
