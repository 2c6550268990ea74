"""What each extractor costs per page, and how well the main-content candidates pick a page's
body (issue 31: choose after measuring quality and cost).

    python benchmarks/extract.py [--rounds 50]
    (the candidates that lost: pip install readability-lxml markdownify)

Pages: the template pages of tests/data/pages (an article with navigation, sidebar, ads, a
cookie banner and a footer; a product page with JSON-LD, microdata and OpenGraph; a docs page
with code; an app page with a script object) and the benchmark site's ~14 KB page. Reported:
median milliseconds per call over `rounds` calls, per page; for main content, the share of the
body's phrases kept and of the boilerplate's phrases left out (article and docs pages).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAGES = HERE.parent / "tests" / "data" / "pages"
sys.path.insert(0, str(HERE.parent))

from crawler import extract  # noqa: E402
from crawler.tools.bench import bench_page  # noqa: E402

#: Phrases of each page's body, and of its boilerplate.
BODY = {
    "article": [
        "Tidal Power Finds a Second Wind",
        "For a decade, the turbines anchored",
        "How the new blade works",
        "Maintenance visits cut from four a year to one",
        "310 euros",
        "laboratory's full report",
    ],
    "docs": [
        "Retries and backoff",
        "Relay retries a failed delivery",
        "queue.publish",
        "dead-letter queue",
        "Maximum delay: 60 seconds",
    ],
    "product": ["Trail Runner X2", "Leichter Laufschuh für technische Pfade", "129.95"],
}
BOILERPLATE = {
    "article": [
        "Accept all cookies",
        "Subscribe now",
        "Most read",
        "Advertisement",
        "rights reserved",
    ],
    "docs": ["Send feedback", "Edit on GitHub", "Queues"],
    "product": ["Versandkostenfrei", "Impressum", "Start"],
}


def readability_markdown(html: str, url: str) -> str:
    from markdownify import markdownify
    from readability import Document

    return str(markdownify(Document(html).summary(html_partial=True), heading_style="ATX"))


def whole_page_markdown(html: str, url: str) -> str:
    from markdownify import markdownify

    return str(markdownify(html, heading_style="ATX"))


CANDIDATES: dict[str, Callable[[str, str], str]] = {
    "trafilatura (chosen)": lambda html, url: extract.main_content(html, url, "markdown"),
    "readability-lxml + markdownify": readability_markdown,
    "markdownify, whole page (no boilerplate removal)": whole_page_markdown,
}


def timed(call: Callable[[], object], rounds: int) -> float:
    call()  # imports and warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    pages = {p.stem: p.read_text() for p in sorted(PAGES.glob("*.html"))}
    pages["bench (14 KB)"] = bench_page(["127.0.0.1"], 80, 0, 1, 500).decode()
    url = "https://site.example/page"

    print("## Main content: quality\n")
    print("| candidate | body kept | boilerplate left out |")
    print("|---|---|---|")
    for name, candidate in CANDIDATES.items():
        try:
            kept = out = total_body = total_boiler = 0
            for page, phrases in BODY.items():
                markdown = candidate(pages[page], url)
                kept += sum(p in markdown for p in phrases)
                total_body += len(phrases)
                out += sum(p not in markdown for p in BOILERPLATE[page])
                total_boiler += len(BOILERPLATE[page])
        except ImportError as exc:
            print(f"| {name} | not installed ({exc.name}) | |")
            continue
        print(f"| {name} | {kept}/{total_body} | {out}/{total_boiler} |")

    calls: dict[str, Callable[[str], object]] = {
        "markdown()": lambda html: extract.main_content(html, url, "markdown"),
        "main_text()": lambda html: extract.main_content(html, url, "text"),
        "metadata()": lambda html: extract.metadata(html, url),
        "structured_data()": lambda html: extract.structured_data(html, url),
        "js_object()": lambda html: extract.js_object([html], None),
    }
    for name, candidate in list(CANDIDATES.items())[1:]:
        calls[name] = lambda html, candidate=candidate: candidate(html, url)  # type: ignore[misc]
    print("\n## Cost: median ms per call\n")
    print("| call | " + " | ".join(pages) + " |")
    print("|---|" + "---|" * len(pages))
    for name, call in calls.items():
        try:
            row = [
                f"{timed(lambda html=html, call=call: call(html), args.rounds):.2f}"  # type: ignore[misc]
                for html in pages.values()
            ]
        except ImportError:
            continue
        print(f"| {name} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
