"""`python -m crawler bench`: a quick speed test anyone can run, no internet needed.

A child process serves a generated multi-host site (aiohttp's server, pages made on the fly:
~14 KB, ~42 links each, a third of them to the other hosts, robots.txt included) on loopback;
this process crawls it with the real engine (store, robots.txt, an item per page) and reports
pages/s, CPU seconds and peak memory. The site runs in its own process so that serving does not
eat the crawler's CPU. For the side-by-side comparison with Scrapy and Crawlee, see
benchmarks/compare.py in the repository.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..crawl.engine import Crawler
from ..crawl.progress import CrawlStats
from ..models import Request, Response
from ..settings import Settings
from ..spider import Spider

FILLER = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. " * 8
ROBOTS_TXT = b"User-agent: *\nDisallow: /private/\n"


def bench_page(hosts: list[str], port: int, host: int, n: int, pages: int) -> bytes:
    """Page `n` of host number `host`: deterministic, every page reachable from /p/0.html."""
    rnd = random.Random(host * 1_000_003 + n)
    links = [f"/p/{(n + 1) % pages}.html"]
    for _ in range(41):
        other = rnd.randrange(len(hosts))
        target = f"/p/{rnd.randrange(pages)}.html"
        links.append(target if other == host else f"http://{hosts[other]}:{port}{target}")
    anchors = "".join(f'<li><a href="{u}">link {i}</a></li>' for i, u in enumerate(links))
    body = f"<p>{FILLER}</p>" * 18
    return (
        f"<!DOCTYPE html><html><head><title>h{host} page {n}</title></head><body>"
        f"<h1>Page {n}</h1><ul>{anchors}</ul>{body}</body></html>"
    ).encode()


def loopback_hosts(count: int) -> list[str]:
    """`count` loopback addresses to serve on: 127.0.0.2... where the system routes them
    (Linux), else 127.0.0.1 alone (macOS, where only it is configured)."""
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
    except OSError:
        return ["127.0.0.1"]
    return [f"127.0.0.{n}" for n in range(2, 2 + count)]


async def _serve(hosts: list[str], pages: int) -> None:
    from aiohttp import web  # the server side: only the child process needs it

    port = 0

    async def handle(request: web.Request) -> web.StreamResponse:
        host = hosts.index(request.url.host) if request.url.host in hosts else 0
        path = request.path
        if path == "/robots.txt":
            return web.Response(body=ROBOTS_TXT, content_type="text/plain")
        if path.startswith("/p/") and path.endswith(".html") and path[3:-5].isdigit():
            n = int(path[3:-5])
            if n < pages:
                body = bench_page(hosts, port, host, n, pages)
                return web.Response(body=body, content_type="text/html", charset="utf-8")
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for host in hosts:
        await web.TCPSite(runner, host, port).start()
        port = runner.addresses[0][1]  # the port the first host got; the others share it
    print(port, flush=True)
    # serve until the parent closes our stdin
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


@contextlib.contextmanager
def serve_site(hosts: list[str], pages: int) -> Iterator[int]:
    """Serve the bench site from a child process; yields the port."""
    child = subprocess.Popen(
        [sys.executable, "-m", "crawler.tools.bench", ",".join(hosts), str(pages)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        if not line.isdigit():
            raise OSError("the bench site did not start")
        yield int(line)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


class BenchSpider(Spider):
    """An item per page, every link followed."""

    name = "bench"

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        title = response.css_first("title")
        yield {"url": response.url, "title": title.text() if title else None}
        for url in response.links():
            yield Request(url)


@dataclass(frozen=True)
class BenchResult:
    stats: CrawlStats
    hosts: int
    cpu_seconds: float
    peak_rss_mb: float

    def report(self) -> str:
        s = self.stats
        return (
            f"crawled {s.pages} pages ({s.failed} failed) from {self.hosts} local hosts in "
            f"{s.elapsed:.1f} s: {s.pages_per_second:.0f} pages/s, {s.items} items; "
            f"CPU {self.cpu_seconds:.1f} s, peak RSS {self.peak_rss_mb:.0f} MB"
        )


#: Opened up to what a loopback site can take (the defaults are polite to real sites).
BENCH_SETTINGS = Settings(concurrency=32, per_domain_concurrency=16)


def run_bench(hosts: int = 4, pages: int = 500, settings: Settings = BENCH_SETTINGS) -> BenchResult:
    """Serve `hosts` x `pages` pages locally and crawl them all, with a throwaway store."""
    names = loopback_hosts(hosts)
    with serve_site(names, pages) as port, tempfile.TemporaryDirectory() as tmp:
        spider = BenchSpider(start_urls=",".join(f"http://{h}:{port}/p/0.html" for h in names))
        crawler = Crawler(spider, settings, store_path=Path(tmp) / "bench.db", fresh=True)
        started = time.process_time()
        stats = asyncio.run(crawler.run())
        cpu = time.process_time() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, else KiB
    return BenchResult(stats, len(names), cpu, peak * scale / 2**20)


if __name__ == "__main__":  # the site's process (see serve_site)
    asyncio.run(_serve(sys.argv[1].split(","), int(sys.argv[2])))
