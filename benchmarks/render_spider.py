"""The spider of benchmarks/render.py: an item per page (the title a script writes, empty when
the page was not rendered), every link followed. `-a render=true` renders every page."""

from crawler import Spider


class Rendered(Spider):
    name = "rendered"

    async def parse(self, response):
        yield {"url": response.url, "title": response.css_first("h1").text()}
        for url in response.links():
            yield response.follow(url)
