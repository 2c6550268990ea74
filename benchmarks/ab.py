"""A/B two revisions of the crawler on the same workload, runs interleaved: the cost of a change.

    python benchmarks/ab.py main HEAD                 # two git revisions
    python benchmarks/ab.py HEAD .                    # HEAD against the working tree
    python benchmarks/ab.py main HEAD --runs 8 --hosts 10 --pages 500 -- -s concurrency=32

Each revision is checked out in a temporary git worktree ("." is this checkout as it is, edits
included) and run with this Python and its installed dependencies (a revision that needs other
dependencies cannot be compared this way). One site (benchsite: ~14 KB pages, 42 links each,
nginx when installed) serves every run; each run is `python -m crawler run
benchmarks/bench_spider.py` with a fresh store, as a child process measured with wait4. The order
alternates (A B, B A, A B...), so that a machine getting busier or quieter does not favour one.

Reported per revision: median pages/s and CPU ms per page (user + system, whole process, startup
included) with their range over the runs; then B against A: the ratio of the medians and the
median and range of the per-pair ratios. A pair ratio range that straddles 1.00 is noise.
Arguments after `--` go to `crawler run` (settings, `-j 2`, `--store postgresql://...`; with a
PostgreSQL store, the benchmark spider's schema is dropped before each run).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from benchsite import crawl_argv, done_pages, drop_schema, measure, serve  # noqa: E402


@dataclass
class Side:
    name: str
    root: Path
    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)


@contextlib.contextmanager
def checkout(revision: str, tmp: Path) -> Iterator[Path]:
    """A directory holding `revision` ("." is this checkout, as it is)."""
    if revision == ".":
        yield ROOT
        return
    where = tmp / f"rev-{abs(hash(revision)) % 10**8}"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(where), revision],
        check=True,
    )
    try:
        yield where
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)], check=False
        )


def crawl(side: Side, starts: list[str], store: Path, extra: list[str]) -> tuple[float, float]:
    """One crawl by `side`: (pages/s, CPU ms per page)."""
    env = {**os.environ, "PYTHONPATH": str(side.root)}
    dsn = next((a for a in extra if a.startswith("postgres")), None)
    if dsn is not None:
        drop_schema(dsn)  # each run starts afresh
    run = measure(crawl_argv(starts, store, extra), env, cwd=side.root)
    if run.code != 0:
        raise SystemExit(f"{side.name}: the crawl failed\n{run.stderr[-3000:]}")
    pages = done_pages(store, extra, env)
    if not pages:
        raise SystemExit(f"{side.name}: no page crawled\n{run.stderr[-3000:]}")
    return pages / run.seconds, run.cpu * 1000 / pages


def spread(values: list[float], digits: int = 0) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="revision A (the baseline); '.' is the working tree")
    parser.add_argument("b", help="revision B (the change); '.' is the working tree")
    parser.add_argument("--runs", type=int, default=5, help="runs of each (default 5)")
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--pages", type=int, default=500, help="pages per host")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: len(argv) - len(extra) - (1 if extra else 0)])
    args.extra = extra
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with (
            checkout(args.a, tmp) as root_a,
            checkout(args.b, tmp) as root_b,
            serve(args.hosts, args.pages) as (starts, server),
        ):
            sides = [Side(f"A {args.a}", root_a), Side(f"B {args.b}", root_b)]
            print(
                f"{args.hosts} hosts x {args.pages} pages served by {server}; "
                f"{args.runs} runs each, interleaved; crawl arguments: {args.extra or 'none'}"
            )
            for run in range(args.runs):
                for side in sides if run % 2 == 0 else sides[::-1]:
                    store = tmp / f"run-{run}-{side.name[0]}.db"
                    rate, cpu = crawl(side, starts, store, args.extra)
                    side.rates.append(rate)
                    side.cpu_ms.append(cpu)
                    print(
                        f"  run {run + 1} {side.name}: {rate:,.0f} pages/s, {cpu:.3f} CPU ms/page"
                    )
    a, b = sides
    print("\n| revision | pages/s median (range) | CPU ms/page median (range) |")
    print("|---|---|---|")
    for side in sides:
        print(f"| {side.name} | {spread(side.rates)} | {spread(side.cpu_ms, 3)} |")
    rate_pairs = [y / x for x, y in zip(a.rates, b.rates, strict=True)]
    cpu_pairs = [y / x for x, y in zip(a.cpu_ms, b.cpu_ms, strict=True)]
    print(
        f"\nB/A pages/s: {statistics.median(b.rates) / statistics.median(a.rates):.3f} "
        f"(pairs {spread(rate_pairs, 3)})"
    )
    print(
        f"B/A CPU per page: {statistics.median(b.cpu_ms) / statistics.median(a.cpu_ms):.3f} "
        f"(pairs {spread(cpu_pairs, 3)})"
    )


if __name__ == "__main__":
    main()
