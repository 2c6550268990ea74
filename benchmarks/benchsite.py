"""The multi-host site for benchmarks: `hosts` hosts on 127.0.0.2..., ~14 KB pages with ~42 links
each (a third to other hosts), every page reachable from each host's /p/0.html. The pages are
`crawler.tools.bench`'s (the site `python -m crawler bench` crawls). Served as static files by nginx
when it is installed (apt-get install nginx-light), else by crawler.tools.bench's aiohttp server
process, which keeps up with one crawler but shares the machine's cores with it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crawler.tools.bench import ROBOTS_TXT, bench_page, serve_site

#: The spider every benchmark crawl runs (an item per page, every link followed).
BENCH_SPIDER = Path(__file__).resolve().parent / "bench_spider.py"


def crawl_argv(
    starts: Sequence[str], store: str | Path, extra: Sequence[str] = (), spider: Path = BENCH_SPIDER
) -> list[str]:
    """`python -m crawler run SPIDER -q --store STORE -a start_urls=...` and `extra`."""
    return [
        sys.executable,
        "-m",
        "crawler",
        "run",
        str(spider),
        "-q",
        "--store",
        str(store),
        "-a",
        f"start_urls={','.join(starts)}",
        *extra,
    ]


@dataclass
class Measured:
    """A child process's run: wall seconds, CPU seconds (user + system, its children
    included), peak RSS in MB, exit code and output."""

    seconds: float
    cpu: float
    rss_mb: float
    code: int
    stdout: str
    stderr: str


def measure(
    argv: Sequence[str], env: dict[str, str] | None = None, cwd: str | Path | None = None
) -> Measured:
    """Run `argv` to its end and measure it with wait4 (its output goes to files, so that a
    chatty child never blocks on a full pipe)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        return Measured(
            seconds,
            usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss / 1024,
            os.waitstatus_to_exitcode(status),
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


def generate(root: Path, hosts: list[str], port: int, pages: int) -> None:
    """Write `pages` pages per host under root/<host>/p/<n>.html, plus a robots.txt."""
    for h, host in enumerate(hosts):
        folder = root / host / "p"
        folder.mkdir(parents=True)
        (root / host / "robots.txt").write_bytes(ROBOTS_TXT)
        for n in range(pages):
            (folder / f"{n}.html").write_bytes(bench_page(hosts, port, h, n, pages))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def done_pages(store: str | Path, extra: Sequence[str], env: dict[str, str]) -> int:
    """Pages done in a benchmark crawl's store: the SQLite file `store`, or the PostgreSQL
    store named in `extra` (read by the crawler that `env`'s PYTHONPATH names, as its schema
    is that crawler's)."""
    dsn = next((a for a in extra if a.startswith("postgres")), None)
    if dsn is None:
        with contextlib.closing(sqlite3.connect(store)) as db:
            return int(db.execute("SELECT COUNT(*) FROM requests WHERE state = 2").fetchone()[0])
    out = subprocess.run(
        [sys.executable, "-m", "crawler", "stats", "--store", dsn, "--spider", "bench", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=env.get("PYTHONPATH"),
    )
    return int(json.loads(out.stdout)["totals"]["done"])


def drop_schema(dsn: str, spider: str = "bench") -> None:
    """Drop a spider's crawl (its schema, crawler_<name>) from a PostgreSQL store."""
    import asyncpg

    async def go() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "crawler_{spider}" CASCADE')
        finally:
            await connection.close()

    asyncio.run(go())


@contextlib.contextmanager
def serve(
    hosts: int = 10, pages: int = 500, access_log: Path | None = None
) -> Iterator[tuple[list[str], str]]:
    """Serve the site; yields (start URLs, server name). With nginx, `access_log` receives a
    line per request: its arrival time (epoch seconds, ms) and its host."""
    names = [f"127.0.0.{i + 2}" for i in range(hosts)]
    nginx = find_nginx()
    if not nginx:
        with serve_site(names, pages) as port:
            yield (
                [f"http://{name}:{port}/p/0.html" for name in names],
                "aiohttp (crawler.tools.bench)",
            )
        return
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root, names, port, pages)
        with nginx_serving(root, names, port, nginx, access_log):
            yield [f"http://{name}:{port}/p/0.html" for name in names], "nginx"


@contextlib.contextmanager
def nginx_serving(
    root: Path, names: list[str], port: int, nginx: str, access_log: Path | None = None
) -> Iterator[None]:
    """nginx serving root/<name>/ as static files on name:port for each of `names` (.html as
    text/html, .js and .json with their types), until the block ends."""
    os.chmod(root, 0o755)
    servers = "".join(
        f"server {{ listen {name}:{port}; root {root / name}; location / {{ }} }}\n"
        for name in names
    )
    conf = root / "nginx.conf"
    conf.write_text(
        f"worker_processes 1; daemon off; pid {root}/nginx.pid; error_log {root}/error.log;"
        f"{' user root;' if os.geteuid() == 0 else ''}\n"
        "events { worker_connections 4096; }\n"
        + (
            f"http {{ log_format t '$msec $host'; access_log {access_log} t; sendfile on;"
            if access_log
            else "http { access_log off; sendfile on;"
        )
        + " tcp_nopush on; keepalive_requests 1000000; default_type text/html;"
        " types { text/html html; text/plain txt; application/javascript js;"
        " application/json json; }\n"
        f"{servers}}}\n"
    )
    proc = subprocess.Popen([nginx, "-c", str(conf)])
    try:
        for name in names:  # wait until every host answers
            for _ in range(200):
                with contextlib.suppress(OSError), socket.create_connection((name, port), 0.1):
                    break
                time.sleep(0.05)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def find_nginx() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
