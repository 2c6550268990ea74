"""The same crawl in Scrapy: an item per page, every link followed, robots.txt obeyed.

scrapy runspider benchmarks/peers/scrapy_bench.py -a start_urls=URL,URL
"""

from urllib.parse import urlsplit

import scrapy


class Bench(scrapy.Spider):
    name = "bench"
    custom_settings = {
        "CONCURRENT_REQUESTS": 32,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 16,
        "ROBOTSTXT_OBEY": True,
        "LOG_LEVEL": "WARNING",
        "TELNETCONSOLE_ENABLED": False,
    }

    def __init__(self, start_urls: str = "", **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.start_urls = start_urls.split(",")
        self.allowed_domains = sorted({urlsplit(u).hostname for u in self.start_urls})

    def parse(self, response):  # type: ignore[no-untyped-def]
        yield {"url": response.url, "title": response.css("title::text").get()}
        yield from response.follow_all(css="a", callback=self.parse)
