"""A broad crawl: thousands of hosts from a seed list, a few pages each (issue 29's benchmark).

    python benchmarks/broad.py [--hosts 10000] [--pages 10] [--focused [--runs N]] [-- crawl args]

Every host is an address of its own in 127.0.0.0/8 (127.10.0.1, 127.10.0.2, ...), all served by
one nginx on one port (a listener on every address of the loopback network), with a robots.txt
and `pages` pages of ~14 KB each, linked within the host (relative links: one set of files
serves every host). The spider (broad_spider.py) reads its start URLs from a file. Settings as
the issue gives them: rate_limit=2, per_domain_concurrency=2, concurrency=64.
`--kill-after 10,20` kills the crawl with SIGKILL after 10 s, resumes it, kills it again after
20 s, and resumes it to its end: every page's item is kept once.

Reported: pages/s, CPU ms per page and peak RSS of the crawl; from nginx's access log, the
robots.txt requests per host (each should be 1), each host's pages (each should be `pages`), and
the shortest gap between two request starts on one host (the pace held at the server: at
rate_limit=2, about 0.5 s). `--focused` also crawls the 10-host site (benchsite.py, 500 pages
per host) at the same total concurrency and no rate limit, for the issue's 0.8x target.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchsite import crawl_argv, drop_schema, find_nginx, free_port, measure, serve  # noqa: E402
from stages import table  # noqa: E402

from crawler.tools.bench import FILLER, ROBOTS_TXT  # noqa: E402

SPIDER = HERE / "broad_spider.py"


def address(n: int) -> str:
    """The n-th host (from 0): 127.10.0.1 ... (250 a block, no .0 nor .255)."""
    return f"127.{10 + n // 62500}.{n // 250 % 250}.{n % 250 + 1}"


def page(n: int, pages: int) -> bytes:
    """Page `n` of a host: ~14 KB, linking to every other page of the host (relative)."""
    links = "".join(
        f'<li><a href="/p/{(n + k) % pages}.html">link {k}</a></li>' for k in range(1, pages)
    )
    body = f"<p>{FILLER}</p>" * 18
    return (
        f"<!DOCTYPE html><html><head><title>page {n}</title></head><body><h1>Page {n}</h1>"
        f"<ul>{links}</ul>{body}</body></html>"
    ).encode()


@contextlib.contextmanager
def broad_site(hosts: int, pages: int, log: Path) -> Iterator[list[str]]:
    """nginx serving the site on every loopback address; yields the seed URLs."""
    nginx = find_nginx()
    if nginx is None:
        raise SystemExit("nginx is needed: apt-get install nginx-light")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)
        site = root / "site"
        (site / "p").mkdir(parents=True)
        (site / "robots.txt").write_bytes(ROBOTS_TXT)
        for n in range(pages):
            (site / "p" / f"{n}.html").write_bytes(page(n, pages))
        conf = root / "nginx.conf"
        conf.write_text(
            f"worker_processes 1; daemon off; pid {root}/nginx.pid; error_log {root}/error.log;"
            f"{' user root;' if os.geteuid() == 0 else ''}\n"
            "worker_rlimit_nofile 65536; events { worker_connections 16384; }\n"
            f"http {{ log_format t '$msec $server_addr $uri'; access_log {log} t;"
            " sendfile on; tcp_nopush on; keepalive_requests 1000000; default_type text/html;"
            " types { text/html html; text/plain txt; }\n"
            # every address of the loopback network: the listener is 0.0.0.0, the crawl talks
            # only to 127.x addresses
            f"server {{ listen {port}; root {site}; location / {{ }} }} }}\n"
        )
        proc = subprocess.Popen([nginx, "-c", str(conf)])
        try:
            for _ in range(200):
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection((address(0), port), 0.1),
                ):
                    break
                time.sleep(0.05)
            yield [f"http://{address(n)}:{port}/p/0.html" for n in range(hosts)]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


def read_log(log: Path) -> tuple[dict[str, int], dict[str, int], float, float]:
    """From the access log: robots.txt requests per host, page requests per host, the
    shortest gap between two page requests to one host, and the fastest pace of any host
    over its pages (requests after its first, over the time from its first to its last:
    requests per second). robots.txt, fetched before a host's first page, is not a page."""
    robots: dict[str, int] = defaultdict(int)
    times: dict[str, list[float]] = defaultdict(list)
    for line in log.read_text().splitlines():
        at, host, uri = line.split(" ", 2)
        if uri == "/robots.txt":
            robots[host] += 1
        else:
            times[host].append(float(at))
    gaps = (b - a for t in times.values() for a, b in itertools.pairwise(t))
    paces = ((len(t) - 1) / (t[-1] - t[0]) for t in times.values() if len(t) > 1 and t[-1] > t[0])
    return (
        robots,
        {host: len(t) for host, t in times.items()},
        min(gaps, default=float("inf")),
        max(paces, default=0.0),
    )


def broad_argv(tmp: Path, seeds: list[str], store: str, extra: list[str]) -> list[str]:
    """`crawler run broad_spider.py` on these seeds (written to a file) and store."""
    seed_file = tmp / "seeds.txt"
    seed_file.write_text("\n".join(seeds) + "\n")
    argv = crawl_argv([], tmp / store, extra, spider=SPIDER)
    argv[argv.index("-a") + 1] = f"seeds={seed_file}"
    return argv


def killed_and_resumed(args: argparse.Namespace, kills: list[float]) -> None:
    """The crawl killed with SIGKILL after each of `kills` seconds (of its run), resumed by
    the same command each time, then run to its end: the items it kept, once each."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        with broad_site(args.hosts, args.pages, tmp / "access.log") as seeds:
            argv = broad_argv(tmp, seeds, "killed.db", args.extra)
            for after in kills:
                child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(after)  # (a benchmark: the kill lands wherever the crawl is)
                child.send_signal(signal.SIGKILL)
                child.wait()
            run = measure(argv)
        if run.code != 0:
            raise SystemExit(f"the resumed crawl failed ({run.code}):\n{run.stderr[-3000:]}")
        with contextlib.closing(sqlite3.connect(tmp / "killed.db")) as db:
            urls = [json.loads(data)["url"] for (data,) in db.execute("SELECT data FROM items")]
        _, pages, _, _ = read_log(tmp / "access.log")
    expected = args.hosts * args.pages
    print(
        f"killed after {', '.join(f'{k:g} s' for k in kills)} and resumed: {len(urls):,} items"
        f" for {len(set(urls)):,} pages (of {expected:,}); {sum(pages.values()) - expected:,}"
        " pages fetched again (in flight at a kill)"
    )


def broad_run(args: argparse.Namespace, extra: list[str], store: str) -> tuple[float, float]:
    """One broad crawl with `extra` arguments, reported; its pages/s and CPU ms per page."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "access.log"
        with broad_site(args.hosts, args.pages, log) as seeds:
            run = measure(broad_argv(Path(tmp), seeds, "broad.db", extra))
        if run.code != 0:
            raise SystemExit(f"the crawl failed ({run.code}):\n{run.stderr[-3000:]}")
        robots, pages, gap, pace = read_log(log)
    total = sum(pages.values())
    rate, cpu = total / run.seconds, run.cpu / max(total, 1) * 1000
    print(f"broad: {args.hosts:,} hosts x {args.pages} pages, nginx, {store}")
    print(
        f"  {total:,} pages in {run.seconds:.1f} s: {rate:,.0f} pages/s,"
        f" {cpu:.3f} CPU ms/page, peak RSS {run.rss_mb:.0f} MB"
    )
    print(
        f"  robots.txt per host: {min(robots.values(), default=0)}-"
        f"{max(robots.values(), default=0)} ({len(robots):,} hosts);"
        f" pages per host: {min(pages.values(), default=0)}-{max(pages.values(), default=0)};"
        f" shortest gap on one host {gap:.3f} s, fastest host pace {pace:.2f} requests/s"
    )
    return rate, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--focused", action="store_true", help="also the 10-host site")
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="with --focused: this many pairs, interleaved (broad first, then focused first...)",
    )
    parser.add_argument(
        "--stages", action="store_true", help="then the same crawl sampled by py-spy, by stage"
    )
    parser.add_argument("--keep", type=Path, help="with --stages: keep py-spy's raw stacks")
    parser.add_argument(
        "--kill-after", help="instead: kill -9 the crawl after these seconds (e.g. 10,20), resume"
    )
    parser.add_argument(
        "--postgres",
        metavar="DSN",
        help="instead: the crawl on this PostgreSQL store, with each of --jobs processes",
    )
    parser.add_argument("--jobs", default="1,2", help="with --postgres: e.g. 1,2")
    parser.add_argument("extra", nargs="*", help="after --: arguments for crawler run")
    args = parser.parse_args()
    if args.kill_after:
        killed_and_resumed(args, [float(k) for k in args.kill_after.split(",")])
        return
    if args.postgres:
        speeds = {}
        for jobs in [int(j) for j in args.jobs.split(",")]:
            drop_schema(args.postgres, "broad")
            extra = [*args.extra, "--store", args.postgres, "-j", str(jobs)]
            speeds[jobs], _ = broad_run(args, extra, f"PostgreSQL, -j {jobs}")
        drop_schema(args.postgres, "broad")
        first = speeds[min(speeds)]
        print(", ".join(f"-j {j}: {s / first:.2f}x" for j, s in speeds.items()))
        return
    if args.focused and args.runs > 1:
        ratios = []
        for n in range(args.runs):
            if n % 2 == 0:
                broad_rate, _ = broad_run(args, args.extra, "SQLite")
                ratios.append(broad_rate / focused_run(args, broad_rate))
            else:
                focused = focused_run(args, None)
                ratios.append(broad_run(args, args.extra, "SQLite")[0] / focused)
        ratios.sort()
        print(
            f"broad/focused over {args.runs} interleaved pairs: median"
            f" {ratios[len(ratios) // 2]:.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f}x)"
        )
        return
    broad_rate, cpu_per_page = broad_run(args, args.extra, "SQLite")
    if args.stages:  # the same crawl again, sampled (see stages.py)
        with tempfile.TemporaryDirectory() as tmp:
            with broad_site(args.hosts, args.pages, Path(tmp) / "access.log") as seeds:
                argv = broad_argv(Path(tmp), seeds, "sampled.db", args.extra)
                raw = Path(tmp) / "stacks.txt"
                sampler = ["py-spy", "record", "--format", "raw", "--rate", "200", "--threads"]
                subprocess.run(
                    [*sampler, "--nonblocking", "-o", str(raw), "--", *argv],
                    check=True,
                    capture_output=True,
                )
            if args.keep:
                args.keep.write_text(raw.read_text())
            print(table(raw.read_text(), cpu_per_page))
    if args.focused:
        focused_run(args, broad_rate)


def focused_run(args: argparse.Namespace, broad_rate: float | None) -> float:
    """The 10-host site at the broad crawl's concurrency, reported; its pages/s."""
    with serve(10, 500) as (starts, server), tempfile.TemporaryDirectory() as tmp:
        extra = ["-s", "concurrency=64", *args.extra]
        run = measure(crawl_argv(starts, Path(tmp) / "focused.db", extra))
    rate = 5000 / run.seconds
    ratio = f"; broad/focused {broad_rate / rate:.2f}x" if broad_rate is not None else ""
    print(
        f"focused: 10 hosts x 500 pages ({server}), concurrency=64: {rate:,.0f} pages/s,"
        f" {run.cpu / 5000 * 1000:.3f} CPU ms/page, peak RSS {run.rss_mb:.0f} MB{ratio}"
    )
    return rate


if __name__ == "__main__":
    main()
