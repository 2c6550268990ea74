"""Crawl the demo bookshop served by a separate process and print pages/s, CPU and peak RSS.

    python benchmarks/local_site.py [--books 3000] [-s concurrency=32 ...]

The server runs in its own process so that it does not share the crawler's interpreter. It is
the standard library's threaded server, which caps what one host can serve; issue 6 brings a
multi-host nginx site and the Scrapy/Crawlee comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import platform
import resource
import tempfile
import time
from pathlib import Path

from crawler import Crawler, Request, Response, Settings, Spider
from crawler.tools.demo import DemoShop, serve


class Everything(Spider):
    name = "bench"

    async def parse(self, response: Response):  # type: ignore[no-untyped-def]
        title = response.css_first("title")
        yield {"url": response.url, "title": title.text() if title else None}
        for url in response.links():
            yield Request(url)


def _serve(books: int, port: multiprocessing.Value) -> None:  # type: ignore[valid-type]
    with serve(DemoShop(books)) as base:
        port.value = int(base.rsplit(":", 1)[1].strip("/"))  # type: ignore[attr-defined]
        while True:
            time.sleep(3600)


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--books", type=int, default=3000)
    args.add_argument("-s", dest="settings", action="append", default=[], metavar="NAME=VALUE")
    opts = args.parse_args()
    overrides = dict(pair.split("=", 1) for pair in opts.settings)
    settings = Settings(concurrency=32, per_domain_concurrency=16).merge(overrides)

    port = multiprocessing.Value("i", 0)
    server = multiprocessing.Process(target=_serve, args=(opts.books, port), daemon=True)
    server.start()
    while port.value == 0:
        time.sleep(0.05)
    spider = Everything()
    spider.start_urls = [f"http://127.0.0.1:{port.value}/"]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            before = resource.getrusage(resource.RUSAGE_SELF)
            stats = asyncio.run(Crawler(spider, settings, store_path=Path(tmp) / "b.db").run())
            after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        server.terminate()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(
        f"machine: {platform.machine()}, {multiprocessing.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(
        f"settings: concurrency={settings.concurrency} "
        f"per_domain_concurrency={settings.per_domain_concurrency}"
    )
    print(f"pages: {stats.pages}  items: {stats.items}  elapsed: {stats.elapsed:.2f} s")
    print(
        f"pages/s: {stats.pages_per_second:.0f}  CPU: {cpu:.2f} s "
        f"({1000 * cpu / max(stats.pages, 1):.2f} ms/page)  "
        f"peak RSS: {after.ru_maxrss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
