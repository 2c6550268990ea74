"""Our side of the comparison: an item per page, every link followed (robots.txt obeyed)."""

from crawler import Request, Spider


class Bench(Spider):
    name = "bench"
    allowed_domains = []  # the site's hosts only link to each other
    custom_settings = {"concurrency": 32, "per_domain_concurrency": 16}

    async def parse(self, response):
        title = response.css_first("title")
        yield {"url": response.url, "title": title.text() if title else None}
        for url in response.links():
            yield Request(url)
