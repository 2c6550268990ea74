"""Memory on an endless site: every page links to 40 new pages. Crawl `--pages` pages (so about
40x that many URLs are queued) and report peak RSS: it must stay bounded by the work in flight,
not grow with the frontier (the target: 20,000 pages, ~800,000 queued, under 250 MB).

    python benchmarks/endless.py [--pages 20000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

SPIDER = """
from crawler import Request, Spider

class Endless(Spider):
    name = "endless"
    custom_settings = {"concurrency": 32, "per_domain_concurrency": 32, "obey_robots": False}

    async def parse(self, response):
        yield {"url": response.url}
        for url in response.links():
            yield Request(url)
"""


def _serve(port: int) -> None:
    from aiohttp import web

    async def page(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        links = "".join(f'<a href="/n/{n * 40 + k}">{k}</a>' for k in range(1, 41))
        return web.Response(
            text=f"<html><body><h1>{n}</h1>{links}</body></html>", content_type="text/html"
        )

    app = web.Application()
    app.router.add_get("/n/{n}", page)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=20_000)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from benchsite import crawl_argv, free_port, measure

    port = free_port()
    server = multiprocessing.Process(target=_serve, args=(port,), daemon=True)
    server.start()
    time.sleep(1.0)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            spider = Path(tmp) / "endless.py"
            spider.write_text(SPIDER)
            store = Path(tmp) / "endless.db"
            run = measure(
                crawl_argv(
                    [f"http://127.0.0.1:{port}/n/0"],
                    store,
                    ["-s", f"max_pages={args.pages}"],
                    spider=spider,
                )
            )
            with sqlite3.connect(store) as db:
                done, queued = db.execute(
                    "SELECT SUM(state = 2), SUM(state = 0) FROM requests"
                ).fetchone()
    finally:
        server.terminate()
    print(
        f"exit {run.code}: {done} pages in {run.seconds:.1f} s "
        f"({done / run.seconds:.0f} pages/s), {queued} URLs queued, "
        f"peak RSS {run.rss_mb:.0f} MB, CPU {run.cpu:.1f} s"
    )


if __name__ == "__main__":
    main()
