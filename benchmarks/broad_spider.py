"""The broad-crawl benchmark's spider: its start URLs read from a file (`-a seeds=FILE`, one URL
a line), an item per page, every link followed (within each host: scope same-host)."""

from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from crawler import Request, Response, Spider


class Broad(Spider):
    name = "broad"
    seeds = ""
    custom_settings = {"concurrency": 64, "per_domain_concurrency": 2, "rate_limit": 2.0}

    def start_requests(self) -> Iterable[Request]:
        for line in Path(self.seeds).read_text().splitlines():
            if line.strip():
                yield Request(line.strip())

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        title = response.css_first("title")
        yield {"url": response.url, "title": title.text() if title else None}
        for url in response.links():
            yield Request(url)
