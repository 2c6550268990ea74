"""What item pipelines cost: the bench crawl (python -m crawler bench's local site: 4 hosts x 500
pages, an item per page) without pipelines, with one trivial pipeline, and with a pydantic
validating one, interleaved over several rounds; plus the writer's own cost per item, timed
alone (no network, no store).

    python benchmarks/pipelines.py [--rounds 5] [--pages 500]
    python benchmarks/pipelines.py --baseline /path/to/older/checkout   # no-pipeline crawl only

`--baseline` imports the crawler from another checkout (say, `git worktree add /tmp/base
<commit>`) to check that a crawl without pipelines is as fast as before them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--rounds", type=int, default=5)
parser.add_argument("--pages", type=int, default=500)
parser.add_argument("--baseline", type=Path, help="a checkout to import the crawler from")
args = parser.parse_args()
sys.path.insert(0, str(args.baseline or Path(__file__).resolve().parent.parent))

from crawler import Crawler  # noqa: E402
from crawler.tools.bench import BENCH_SETTINGS, BenchSpider, loopback_hosts, serve_site  # noqa: E402


class Trivial:
    def process_item(self, item: Any, spider: Any) -> Any:
        return item


def variants() -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {"none": []}
    if args.baseline is None:
        import pydantic

        class Page(pydantic.BaseModel):
            url: str
            title: str | None

        class Validate:
            def process_item(self, item: Any, spider: Any) -> Any:
                return Page.model_validate(item)

        found["trivial"] = [Trivial()]
        found["pydantic"] = [Validate()]
    return found


def crawl(start_urls: str, pipelines: list[Any]) -> tuple[float, float, int]:
    spider = BenchSpider(start_urls=start_urls)
    if pipelines:
        spider.pipelines = pipelines
    with tempfile.TemporaryDirectory() as tmp:
        crawler = Crawler(spider, BENCH_SETTINGS, store_path=Path(tmp) / "b.db", fresh=True)
        cpu = time.process_time()
        stats = asyncio.run(crawler.run())
        cpu = time.process_time() - cpu
    return stats.pages_per_second, cpu, stats.items


def writer_cost(pipelines: list[Any], n: int = 20_000) -> float:
    """Microseconds per item the writer spends on the pipelines and the JSON text."""
    from crawler.page.pipelines import Pipelines
    from crawler.records import Outcome, State, StoredRequest

    runner = Pipelines(pipelines, BenchSpider())
    stored = StoredRequest(1, "http://a/", "a", "parse", 0, 0, None, False, 0)

    async def run() -> float:
        started = time.perf_counter()
        for _ in range(n):
            await runner.process(
                Outcome(stored, State.DONE, 1, produced=[{"url": "http://a/", "title": "t"}])
            )
        return (time.perf_counter() - started) / n * 1e6

    return asyncio.run(run())


def main() -> None:
    hosts = loopback_hosts(4)
    kinds = variants()
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in kinds}
    with serve_site(hosts, args.pages) as port:
        start_urls = ",".join(f"http://{h}:{port}/p/0.html" for h in hosts)
        crawl(start_urls, [])  # warm-up (imports, caches), not counted
        for _ in range(args.rounds):
            for name, pipelines in kinds.items():
                results[name].append(crawl(start_urls, pipelines))
    base_cpu = statistics.median(cpu / items for _, cpu, items in results["none"])
    print(f"{len(hosts)} hosts x {args.pages} pages, {args.rounds} rounds (median):")
    for name, runs in results.items():
        rate = statistics.median(r for r, _, _ in runs)
        cpu_item = statistics.median(cpu / items for _, cpu, items in runs)
        print(
            f"  {name:9} {rate:7.0f} pages/s  {cpu_item * 1e6:6.0f} us CPU/item"
            f"  ({(cpu_item - base_cpu) * 1e6:+.0f} us vs none)"
        )
    if args.baseline is None:
        print("writer alone (pipelines + JSON text), per item:")
        for name, pipelines in kinds.items():
            print(f"  {name:9} {writer_cost(pipelines):6.2f} us")


if __name__ == "__main__":
    main()
