"""Files streamed to disk: 20 files of 50-200 MB served by nginx, named by the items of 21
pages (one file by two pages: stored once), downloaded by `python -m crawler run` with
`files_store`; prints the time, throughput and the crawler's peak RSS (wait4), and checks
every stored file against its source (size and SHA-256).

    python benchmarks/files.py [--files 20] [--min-mb 50] [--max-mb 200]
        [--peers-python .peers/bin/python]

With --peers-python (a Python with scrapy: `python -m venv .peers && .peers/bin/pip install
scrapy`), Scrapy's FilesPipeline fetches the same files from the same server in the same run.

The files are sparse on the server's disk (zeros): what is measured is the crawler's side.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path

from benchsite import find_nginx, free_port, measure, nginx_serving

MB = 1024 * 1024

SPIDER = textwrap.dedent(
    """
    from crawler import Request, Spider

    class Files(Spider):
        name = "files"
        start_urls = [{start!r}]

        async def parse(self, response):
            if response.url.endswith("/index.html"):
                for url in response.links():
                    yield Request(url)
                return
            n = int(response.url.rsplit("/", 1)[1].split(".")[0])
            yield {{"page": n, "file_urls": [f"/f/{{max(n, 1)}}.bin"]}}  # pages 0 and 1: one file
    """
)


SCRAPY = textwrap.dedent(
    """
    import scrapy
    from scrapy.crawler import CrawlerProcess

    class Files(scrapy.Spider):
        name = "files"
        start_urls = [{start!r}]

        def parse(self, response):
            if response.url.endswith("/index.html"):
                yield from response.follow_all(css="a")
                return
            n = int(response.url.rsplit("/", 1)[1].split(".")[0])
            yield {{"page": n, "file_urls": [response.urljoin(f"/f/{{max(n, 1)}}.bin")]}}

    process = CrawlerProcess({{
        "ITEM_PIPELINES": {{"scrapy.pipelines.files.FilesPipeline": 1}},
        "FILES_STORE": "scrapy-files",
        "ROBOTSTXT_OBEY": False,
        "LOG_LEVEL": "ERROR",
        "FEEDS": {{"scrapy.jsonl": {{"format": "jsonlines"}}}},
    }})
    process.crawl(Files)
    process.start()
    """
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(4 * MB):
            digest.update(chunk)
    return digest.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--min-mb", type=int, default=50)
    ap.add_argument("--max-mb", type=int, default=200)
    ap.add_argument("--peers-python", help="a Python with scrapy, to run its FilesPipeline too")
    args = ap.parse_args()
    nginx = find_nginx()
    if nginx is None:
        sys.exit("nginx is needed (apt-get install nginx-light)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "site"
        host = "127.0.0.2"
        site = root / host
        (site / "f").mkdir(parents=True)
        (site / "p").mkdir()
        sizes = {}
        for n in range(1, args.files + 1):
            step = (args.max_mb - args.min_mb) / max(args.files - 1, 1)
            size = int((args.min_mb + step * (n - 1)) * MB)
            with open(site / "f" / f"{n}.bin", "wb") as out:
                out.truncate(size)
            sizes[n] = size
        links = "".join(f'<a href="/p/{n}.html">{n}</a>' for n in range(args.files + 1))
        (site / "p" / "index.html").write_text(f"<html><body>{links}</body></html>")
        for n in range(args.files + 1):
            (site / "p" / f"{n}.html").write_text("<html><body>a page</body></html>")
        port = free_port()
        work = Path(tmp) / "crawl"
        work.mkdir()
        (work / "files_spider.py").write_text(
            SPIDER.format(start=f"http://{host}:{port}/p/index.html")
        )
        total = sum(sizes.values())
        (work / "scrapy_files.py").write_text(
            SCRAPY.format(start=f"http://{host}:{port}/p/index.html")
        )
        with nginx_serving(root, [host], port, nginx):
            if args.peers_python:
                peer = measure([args.peers_python, "scrapy_files.py"], cwd=work)
                got = sum(1 for _ in (work / "scrapy-files" / "full").iterdir())
                print(
                    f"scrapy FilesPipeline: {peer.seconds:.1f} s, CPU {peer.cpu:.1f} s, peak RSS"
                    f" {peer.rss_mb:.0f} MB, {got} files stored (exit {peer.code})"
                )
            run = measure(
                [
                    sys.executable,
                    "-m",
                    "crawler",
                    "run",
                    "files_spider.py",
                    "-q",
                    "-o",
                    "items.jsonl",
                    "-s",
                    "files_store=files",
                    "-s",
                    "obey_robots=false",
                ],
                cwd=work,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
            )
        if run.code != 0:
            sys.exit(f"the crawl failed ({run.code}): {run.stderr[-2000:]}")
        items = [json.loads(line) for line in (work / "items.jsonl").read_text().splitlines()]
        entries = {entry["url"]: entry for item in items for entry in item["files"]}
        stored = sorted((work / "files" / "full").iterdir())
        assert len(entries) == len(stored) == args.files, (len(entries), len(stored))
        for url, entry in entries.items():
            n = int(url.rsplit("/", 1)[1].split(".")[0])
            path = work / "files" / entry["path"]
            assert entry["size"] == sizes[n] == path.stat().st_size, url
            assert entry["checksum"] == sha256_of(site / "f" / f"{n}.bin"), url
        print(
            f"{args.files} files, {total / MB:.0f} MB ({args.min_mb}-{args.max_mb} MB each), "
            f"{len(items)} items: {run.seconds:.1f} s ({total / MB / run.seconds:.0f} MB/s), "
            f"CPU {run.cpu:.1f} s, peak RSS {run.rss_mb:.0f} MB; every file checked "
            "(size, SHA-256)"
        )


if __name__ == "__main__":
    main()
