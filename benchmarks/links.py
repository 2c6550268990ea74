"""Cost of a page's links: extraction, resolution and canonicalization, per link, on the benchmark
page (crawler.tools.bench: 14 KB, 42 links, a third of them absolute to other hosts), as the crawl does
them (extract_links, then each link's URL to request, host and canonical form). The HTML parse is
timed apart. Also the per-link cost of the URL parsers we could build on, for the README's
dependency notes.

    python benchmarks/links.py                      # this checkout
    python benchmarks/links.py --crawler /tmp/base  # another checkout (its root), to compare

Numbers are the best of several rounds (the least disturbed by the rest of the machine).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent


def best(run: Callable[[], Any], number: int, rounds: int = 7) -> float:
    """Seconds per call, the best of `rounds` rounds of `number` calls."""
    for _ in range(number // 10):
        run()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            run()
        times.append((time.perf_counter() - start) / number)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crawler", type=Path, default=HERE, help="checkout to run (its root)")
    parser.add_argument("--pages", type=int, default=3000, help="pages per round")
    args = parser.parse_args()
    sys.path.insert(0, str(args.crawler.resolve()))

    from crawler import urls
    from crawler.parser import extract_links, parse_html
    from crawler.tools.bench import bench_page

    hosts = [f"127.0.0.{i + 2}" for i in range(10)]
    html = bench_page(hosts, 8080, 0, 7, 500).decode()
    page = "http://127.0.0.2:8080/p/7.html"
    tree = parse_html(html)
    links = extract_links(tree, page)
    canonicalizer = urls.Canonicalizer()
    key = getattr(canonicalizer, "key", None)  # before issue 26 the URL was its own key

    def crawl_links() -> None:
        for url in extract_links(tree, page):
            split = canonicalizer.split(url)
            if split is not None and key is not None:
                key(split[0])

    per_page = best(crawl_links, args.pages)
    recent = getattr(urls, "_RECENT", None)  # links seen lately (since issue 26)

    def crawl_new_links() -> None:
        if recent is not None:
            recent.clear()  # every link new to the process, as on a page of a new site
        crawl_links()

    new_page = best(crawl_new_links, args.pages)
    parse = best(lambda: parse_html(html), args.pages // 3)
    print(f"crawler at {args.crawler}: page of {len(html):,} bytes, {len(links)} links")
    print("  extraction + resolution + canonicalization:")
    for name, cost in (("links new to the process", new_page), ("links seen before", per_page)):
        print(
            f"    {name:<26} {cost * 1e6:6.1f} us per page, "
            f"{cost * 1e6 / len(links):.2f} us per link"
        )
    print(f"  HTML parse (apart): {parse * 1e6:.1f} us per page")

    relative, absolute = "/p/8.html", "http://127.0.0.5:8080/p/99.html"
    candidates: list[tuple[str, Callable[[str], Any]]] = []
    from urllib.parse import urljoin

    candidates.append(("urllib.parse.urljoin (not WHATWG)", lambda h: urljoin(page, h)))
    try:
        import ada_url

        candidates.append(("ada-url join_url (cffi)", lambda h: ada_url.join_url(page, h)))
    except ImportError:
        pass
    try:
        import can_ada

        candidates.append(("can-ada parse (absolute only)", lambda h: can_ada.parse(absolute).href))
    except ImportError:
        pass
    if hasattr(urls, "resolve"):
        base = urls.Base(page)
        candidates.append(("crawler.urls Base.resolve (fast path)", base.resolve))
        candidates.append(("crawler.urls resolve (fast path)", lambda h: urls.resolve(page, h)))
    print("  one link resolved against the page, us (relative / absolute):")
    for name, resolve in candidates:
        costs = [best(lambda h=h, r=resolve: r(h), 20000) * 1e6 for h in (relative, absolute)]
        print(f"    {name:<40} {costs[0]:5.2f} / {costs[1]:5.2f}")


if __name__ == "__main__":
    main()
