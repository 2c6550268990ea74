"""The same crawl in Crawlee for Python: an item per page, every link followed, robots.txt obeyed.

python benchmarks/peers/crawlee_bench.py URL [URL...]
"""

import asyncio
import sys

from crawlee import ConcurrencySettings
from crawlee.crawlers import ParselCrawler, ParselCrawlingContext


async def main(urls: list[str]) -> None:
    crawler = ParselCrawler(
        concurrency_settings=ConcurrencySettings(
            min_concurrency=32, max_concurrency=32, desired_concurrency=32
        ),
        respect_robots_txt_file=True,
        configure_logging=False,
    )

    @crawler.router.default_handler
    async def handler(context: ParselCrawlingContext) -> None:
        title = context.selector.css("title::text").get()
        await context.push_data({"url": context.request.url, "title": title})
        await context.enqueue_links(strategy="all")

    await crawler.run(urls)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
