"""Where a page's CPU goes: the crawl of the benchmark site sampled by py-spy, each sample put in
the stage of the innermost frame that names one (fetch, decode, parse, link extraction, URL
resolution and canonicalization, dedup, store, events and stats, the spider's callback,
scheduling), and each stage's share turned into CPU ms per page with the CPU of an unprofiled
run of the same crawl.

    pip install py-spy
    python benchmarks/stages.py [--hosts 10] [--pages 500] [--crawler PATH] [-- crawl args]

py-spy samples the process from outside (no tracing overhead in the crawl); the store's SQLite
thread is sampled too (a PostgreSQL server's own CPU is not: see scaleout.py's DB CPU share).
It needs ptrace rights (as root, or with CAP_SYS_PTRACE). Arguments after `--` go to `crawler
run` (`--store postgresql://...`: the benchmark spider's schema is dropped before and after).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchsite import crawl_argv, done_pages, drop_schema, measure, serve  # noqa: E402

#: (stage, patterns): a frame whose "function (file)" text holds a pattern is in the stage.
#: Looked up from the innermost frame outwards; the first stage named wins.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("URL resolution + canonicalization", ("crawler/urls.py", "ada_url")),
    ("link extraction", ("extract_links", "crawler/parser.py:base_url")),
    ("HTML parse", ("parse_html", "selectolax", "lexbor")),
    ("decode", ("/decoding.py", "parser.py:decode", "charset_normalizer", "(decode ")),
    ("store", ("crawler/store/", "aiosqlite", "sqlite3", "asyncpg")),
    ("events + stats", ("/events.py", "crawler/stats.py", "/display.py")),
    ("dedup", ("_collect", "_remember", "/stored.py")),
    ("spider callback", ("/bench.py", "crawler/models.py", "crawler/spider.py", "_spider.py")),
    (
        "fetch",
        (
            "/fetcher.py",
            "/addresses.py",
            "aiohttp/",
            "httpx/",
            "httpx_aiohttp",
            "yarl/",
            "multidict",
            "hishel",
        ),
    ),
    ("page runner", ("crawler/pages.py", "page/runner.py")),
    ("robots.txt", ("/robots.py", "protego")),
    ("frontier + politeness", ("/frontier.py", "/politeness.py", "/leases.py")),
    ("engine (workers, writer)", ("/engine.py", "/writer.py")),
    ("event loop (asyncio)", ("asyncio/", "selectors.py")),
]
# (patterns name files by their last folder and name, or by their name alone, so that they
# hold for revisions from before the folders too: crawler/fetcher.py, crawler/net/fetcher.py)


#: Innermost frames that wait rather than compute (py-spy cannot always tell a thread blocked in
#: C from one running): the store thread waiting for work, the event loop waiting for sockets.
IDLE = ("_connection_worker_thread (aiosqlite/core.py:59)", "EpollSelector.select (")


IDLE_STAGE = "waiting"


def stage_of(stack: list[str]) -> str:
    if any(stack[-1].startswith(idle) for idle in IDLE):
        return IDLE_STAGE
    for frame in reversed(stack):
        for stage, patterns in STAGES:
            if any(pattern in frame for pattern in patterns):
                return stage
    return "other (startup, imports, interpreter)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--pages", type=int, default=500, help="pages per host")
    parser.add_argument("--crawler", type=Path, default=HERE.parent, help="checkout to run")
    parser.add_argument("--rate", type=int, default=400, help="py-spy samples per second")
    parser.add_argument("--keep", type=Path, help="keep py-spy's raw stacks in this file")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: len(argv) - len(extra) - (1 if extra else 0)])
    args.extra = extra
    pyspy = shutil.which("py-spy")
    if pyspy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    env = {**os.environ, "PYTHONPATH": str(args.crawler.resolve())}
    with tempfile.TemporaryDirectory() as tmp_name, serve(args.hosts, args.pages) as (starts, _):
        tmp = Path(tmp_name)
        # the CPU of a plain run
        store = tmp / "plain.db"
        dsn = next((a for a in args.extra if a.startswith("postgres")), None)
        if dsn is not None:
            drop_schema(dsn)
        run = measure(crawl_argv(starts, store, args.extra), env)
        if run.code:
            raise SystemExit(f"the crawl failed\n{run.stderr[-3000:]}")
        pages = done_pages(store, args.extra, env)
        if dsn is not None:
            drop_schema(dsn)
        cpu_ms = run.cpu * 1000 / pages
        # the same crawl, sampled
        raw = tmp / "stacks.txt"
        store = tmp / "sampled.db"
        subprocess.run(
            [
                pyspy,
                "record",
                "--format",
                "raw",
                "--rate",
                str(args.rate),
                "--threads",
                "--nonblocking",
                "-o",
                str(raw),
                "--",
                *crawl_argv(starts, store, args.extra),
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        if args.keep:
            shutil.copy(raw, args.keep)
        raw_text = raw.read_text()
    print(f"{pages} pages, {cpu_ms:.3f} CPU ms per page (unprofiled run, startup included)")
    print(table(raw_text, cpu_ms))


def table(raw: str, cpu_ms: float) -> str:
    """py-spy's raw stacks put in stages: a markdown table of each stage's share and CPU ms per
    page (`cpu_ms`: the CPU per page of an unprofiled run)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack_text, _, count = line.rpartition(" ")
        counts[stage_of(stack_text.split(";"))] += int(count)
    idle = counts.pop(IDLE_STAGE, 0)
    total = sum(counts.values())
    rows = [f"{total} samples computing, {idle} waiting (left out)", ""]
    rows += ["| stage | share | CPU ms per page |", "|---|---|---|"]
    for stage, count in counts.most_common():
        share = count / total
        rows.append(f"| {stage} | {share:.1%} | {share * cpu_ms:.3f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
