"""Our side of the comparison: an item per page, every link followed (robots.txt obeyed).
The spider `python -m crawler bench` runs, at the same settings."""

try:
    from crawler.tools.bench import BENCH_SETTINGS, BenchSpider
except ImportError:  # a revision from before the folders (benchmarks/ab.py runs old ones)
    from crawler.bench import BENCH_SETTINGS, BenchSpider  # type: ignore[no-redef]


class Bench(BenchSpider):
    custom_settings = {
        "concurrency": BENCH_SETTINGS.concurrency,
        "per_domain_concurrency": BENCH_SETTINGS.per_domain_concurrency,
    }
