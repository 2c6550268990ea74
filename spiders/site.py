"""Crawl a whole site and record every page's title.

    python -m crawler run spiders/site.py
    python -m crawler run spiders/site.py -a start_urls=https://example.com/ -o pages.jsonl

Only the hosts of the start URLs are crawled (set `allowed_domains` to widen that).
"""

from crawler import Request, Spider


class Site(Spider):
    name = "site"
    start_urls = ["https://books.toscrape.com/"]

    async def parse(self, response):
        title = response.css_first("title")
        yield {"url": response.url, "title": title.text(strip=True) if title else None}
        for url in response.links():
            yield Request(url, callback=self.parse)
