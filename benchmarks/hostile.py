"""Crawl scenarios a new user trips over in the first week, measured at the server.

    python benchmarks/hostile.py                          # every scenario, this checkout
    python benchmarks/hostile.py --crawler /tmp/oldtree   # the same against another checkout
    python benchmarks/hostile.py --only named,spellings

Each scenario runs `python -m crawler run` (in a child process, with the chosen checkout first
on PYTHONPATH) against local servers in this process, in real time, and prints what the
server saw (requests per host), the items stored, the failures by kind and the wall time:

- flaky: a host with 50 healthy pages and 10 that answer 503 twice, then 200 (a site in a bad
  minute), crawled with max_retries=3, per_domain_concurrency=2, rate_limit=10;
- dead: 100 pages on a host that resets every connection (no HTTP answer), default settings
  (allow_private_networks=true, so that older checkouts reach it too);
- named: a 10-host local site (127.0.0.2-11, 300 pages each) from one start URL, with
  allowed_domains naming all ten hosts, max_pages=3000;
- budget: the same site with allowed_domains=[] (any host: the nine others are not named, so
  blocked) and max_pages=200;
- spellings: a page linking to its own host as 2130706454, 0x7f000016, 0177.0.0.22 and 127.22,
  and to 127.0.0.256 (no such address), with allow_private_networks=true;
- bad-pages: a 62-page site with one page answering 500 and one 503, default settings (32 s
  before host health was judged by evidence, 6 s after: the retries' backoff).

flaky and dead took minutes before that: they waited out the circuit breaker's cooldowns.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from crawler.tools.bench import bench_page  # noqa: E402

SITE_HOSTS = [f"127.0.0.{i}" for i in range(2, 12)]
FLAKY, SILENT, SPELLED = "127.0.0.20", "127.0.0.21", "127.0.0.22"

SPIDER = """
from crawler import Request, Spider

class Scenario(Spider):
    name = "scenario"
    start_urls = {start!r}
    allowed_domains = {allowed!r}

    async def parse(self, response):
        yield {{"url": response.url}}
        for url in response.links():
            yield Request(url)
"""


class Servers:
    """Every scenario's hosts, served from one event loop in a thread; counts requests."""

    def __init__(self, pages: int) -> None:
        self.pages = pages
        self.port = 0
        self.hits: Counter[str] = Counter()  # per host (as the socket saw it)
        self.paths: Counter[tuple[str, str]] = Counter()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None

    async def _page(self, request: web.Request) -> web.Response:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        host = sockname[0] if sockname else ""
        self.hits[host] += 1
        self.paths[host, request.path_qs] += 1
        path = request.path
        if path == "/robots.txt":
            return web.Response(status=404)
        if host == FLAKY:
            if path in ("/", "/dead", "/bad"):
                links = [f"/p/{n}" for n in range(60)]
                if path == "/dead":
                    links = [f"http://{SILENT}:{self.port}/d/{n}" for n in range(100)]
                if path == "/bad":  # 60 good pages, one 500 page, one 503 page
                    links = [f"/good/{n}" for n in range(60)] + ["/500", "/503"]
                return _html("".join(f'<a href="{u}">x</a>' for u in links))
            if path in ("/500", "/503"):
                return web.Response(status=int(path[1:]), text="broken")
            if path.startswith("/good/"):
                return _html(f"good {path}")
            if path.startswith("/p/"):
                n = int(path[3:])
                if n >= 50 and self.paths[host, path] <= 2:
                    return web.Response(status=503, text="overloaded")
                return _html(f"page {n}")
        if host == SPELLED:
            if path == "/":
                hosts = ["2130706454", "0x7f000016", "0177.0.0.22", "127.22", "127.0.0.256"]
                return _html("".join(f'<a href="http://{h}:{self.port}/x">x</a>' for h in hosts))
            return _html("the same page")
        if host in SITE_HOSTS and path.startswith("/p/"):
            n = int(path[3:].removesuffix(".html"))
            page = bench_page(SITE_HOSTS, self.port, SITE_HOSTS.index(host), n, self.pages)
            return web.Response(body=page, content_type="text/html")
        return web.Response(status=404)

    async def _reset(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            await reader.readuntil(b"\r\n\r\n")
            self.hits[SILENT] += 1
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._page)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self.port = _free_port()
        for host in [*SITE_HOSTS, FLAKY, SPELLED]:
            await web.TCPSite(runner, host, self.port).start()
        silent = await asyncio.start_server(self._reset, SILENT, self.port)
        self._ready.set()
        await self._stop.wait()
        silent.close()
        await runner.cleanup()

    @contextlib.contextmanager
    def running(self) -> Iterator[Servers]:
        thread = threading.Thread(target=self._loop.run_until_complete, args=(self._serve(),))
        thread.start()
        self._ready.wait()
        try:
            yield self
        finally:
            assert self._stop is not None
            self._loop.call_soon_threadsafe(self._stop.set)
            thread.join()


def _html(body: str) -> web.Response:
    return web.Response(text=f"<html><body>{body}</body></html>", content_type="text/html")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_scenario(
    name: str,
    servers: Servers,
    crawler_path: Path,
    start: list[str],
    allowed: list[str],
    settings: list[str],
) -> None:
    before = Counter(servers.hits)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "scenario.py").write_text(SPIDER.format(start=start, allowed=allowed))
        args = [sys.executable, "-m", "crawler", "run", "scenario.py", "--store", "s.db", "-q"]
        for setting in settings:
            args += ["-s", setting]
        env = {**os.environ, "PYTHONPATH": str(crawler_path)}
        began = time.monotonic()
        done = subprocess.run(args, cwd=tmp, env=env, capture_output=True, text=True)
        elapsed = time.monotonic() - began
        if done.returncode != 0:
            print(f"{name}: exit {done.returncode}\n{done.stderr}", file=sys.stderr)
            return
        with sqlite3.connect(Path(tmp) / "s.db") as db:
            items = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            done_pages = db.execute("SELECT COUNT(*) FROM requests WHERE state = 2").fetchone()[0]
            failures = db.execute(
                "SELECT error, COUNT(*) FROM requests WHERE state = 3 GROUP BY error"
                " ORDER BY 2 DESC"
            ).fetchall()
    hits = {h: n - before[h] for h, n in servers.hits.items() if n - before[h]}
    print(f"## {name}  ({elapsed:.0f} s, `{' '.join(settings) or 'default settings'}`)")
    print(f"- requests at the server: {sum(hits.values())} ({_hosts(hits)})")
    print(f"- items: {items}, pages done: {done_pages}")
    print(f"- failed: {', '.join(f'{e} {n}' for e, n in failures) or 'none'}")
    print(flush=True)


def _hosts(hits: dict[str, int]) -> str:
    if len(hits) > 4:
        return f"{len(hits)} hosts, {min(hits.values())}-{max(hits.values())} each"
    return ", ".join(f"{host}: {n}" for host, n in sorted(hits.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crawler", type=Path, default=HERE, help="checkout to run (its root)")
    parser.add_argument("--only", default="flaky,dead,named,budget,spellings,bad-pages")
    parser.add_argument("--pages", type=int, default=300, help="pages per host of the site")
    args = parser.parse_args()
    only = set(args.only.split(","))
    with Servers(args.pages).running() as servers:
        port = servers.port
        site_start = [f"http://{SITE_HOSTS[0]}:{port}/p/0.html"]
        scenarios = {
            "flaky": (
                [f"http://{FLAKY}:{port}/"],
                [FLAKY],
                ["max_retries=3", "per_domain_concurrency=2", "rate_limit=10"],
            ),
            "dead": (
                [f"http://{FLAKY}:{port}/dead"],
                [FLAKY, SILENT],
                ["allow_private_networks=true"],  # so that an older guard lets it through
            ),
            "named": (site_start, SITE_HOSTS, ["max_pages=3000"]),
            "budget": (site_start, [], ["max_pages=200"]),
            "spellings": ([f"http://{SPELLED}:{port}/"], [], ["allow_private_networks=true"]),
            "bad-pages": ([f"http://{FLAKY}:{port}/bad"], [FLAKY], []),
        }
        for name, (start, allowed, settings) in scenarios.items():
            if name in only:
                run_scenario(name, servers, args.crawler, start, allowed, settings)


if __name__ == "__main__":
    main()
