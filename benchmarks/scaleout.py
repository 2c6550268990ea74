"""One crawl, many processes: SQLite vs PostgreSQL with 1 process, and PostgreSQL with -j 2 and
-j 4, on the 10-host nginx site, in one run; then the rate-limited runs, measured at the server.

    python benchmarks/scaleout.py [--hosts 10] [--pages 500] [--dsn postgresql://...]

Each run is `python -m crawler run benchmarks/bench_spider.py` in a child process, measured with
wait4 (wall time, CPU of the crawler processes). For PostgreSQL runs it also reports the
statements per page (the store counts what it sends) and the database's CPU share: the CPU
time of the PostgreSQL server's processes (the postmaster's reaped backends included) over the
crawl's total CPU time. The rate-limited runs (`rate_limit=5`) read nginx's access log: the
most requests any one second saw, for the whole site.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchsite import crawl_argv, drop_schema, measure, serve  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    name: str
    pages: int
    seconds: float
    cpu: float
    db_cpu: float
    statements: int
    peak: int | None = None

    @property
    def rate(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0


def postgres_cpu() -> float:
    """CPU seconds of the PostgreSQL server so far: the postmaster, its reaped backends, and
    its live processes."""
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if not comm.startswith("postgres"):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
        if int(fields[1]) == 1 or "postmaster" in comm or fields[1] == "1":
            total += (int(fields[13]) + int(fields[14])) / TICK  # cutime, cstime
    return total


def crawl(name: str, store: str, starts: list[str], jobs: int, *settings: str) -> Run:
    argv = crawl_argv(
        starts,
        store,
        [
            *(["-j", str(jobs)] if jobs > 1 else []),
            *[arg for setting in settings for arg in ("-s", setting)],
        ],
    )
    argv.remove("-q")  # the summary's statement counts are logged at INFO
    env = {**os.environ, "COLUMNS": "200"}
    db_before = postgres_cpu()
    run = measure(argv, env)
    if run.code != 0:
        raise SystemExit(f"{name}: failed\n{run.stderr[-3000:]}")
    err = run.stderr
    db_cpu = postgres_cpu() - db_before if store.startswith("postgresql") else 0.0
    statements = sum(int(n) for n in re.findall(r"store: (\d+) statements", err))
    done = re.search(r"store \S+: (\d+) (?:URLs )?done, (\d+) failed", err)
    pages = int(done.group(1)) + int(done.group(2)) if done else 0
    return Run(name, pages, run.seconds, run.cpu, db_cpu, statements)


def peak_per_second(log: Path, since: float) -> tuple[int, float]:
    """The most requests any one second saw after `since`, and the mean rate."""
    times = [float(line.split()[0]) for line in log.read_text().splitlines() if line]
    times = [t for t in times if t >= since]
    if not times:
        return 0, 0.0
    per_second = Counter(int(t) for t in times)
    inner = [n for second, n in per_second.items() if int(times[0]) < second < int(times[-1])]
    return max(inner or per_second.values()), len(times) / max(times[-1] - times[0], 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--rate-pages", type=int, default=60, help="pages per host, rated runs")
    parser.add_argument(
        "--dsn",
        default=os.environ.get("CRAWLER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1/test"),
    )
    parser.add_argument("--only", default="speed,rate")
    args = parser.parse_args()
    runs: list[Run] = []
    spider = "bench"  # benchmarks/bench_spider.py's name: crawler_bench in the database
    with tempfile.TemporaryDirectory() as tmp:
        if "speed" in args.only:
            with serve(args.hosts, args.pages) as (starts, server):
                print(f"site: {args.hosts} hosts x {args.pages} pages, served by {server}")
                runs.append(crawl("SQLite, 1 process", str(Path(tmp) / "b.db"), starts, 1))
                for jobs in (1, 2, 4):
                    drop_schema(args.dsn, spider)
                    runs.append(crawl(f"PostgreSQL, -j {jobs}", args.dsn, starts, jobs))
        if "rate" in args.only:
            log = Path(tmp) / "access.log"
            with serve(args.hosts, args.rate_pages, access_log=log) as (starts, _):
                for jobs in (1, 2, 4):
                    drop_schema(args.dsn, spider)
                    since = time.time()
                    run = crawl(
                        f"PostgreSQL, -j {jobs}, rate_limit=5",
                        args.dsn,
                        starts,
                        jobs,
                        "rate_limit=5",
                    )
                    run.peak, _mean = peak_per_second(log, since)
                    runs.append(run)
        drop_schema(args.dsn, spider)
    base = runs[0].rate if runs else 0
    print(
        "| run | pages | seconds | pages/s | vs SQLite | crawler CPU s | statements/page |"
        " DB CPU share | server peak req/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        share = r.db_cpu / (r.db_cpu + r.cpu) if r.db_cpu else 0.0
        print(
            f"| {r.name} | {r.pages} | {r.seconds:.1f} | {r.rate:.0f} |"
            f" {r.rate / base:.2f}x | {r.cpu:.1f} |"
            f" {r.statements / r.pages if r.statements and r.pages else 0:.2f} |"
            f" {share:.0%} | {r.peak if r.peak is not None else '-'} |"
        )


if __name__ == "__main__":
    main()
