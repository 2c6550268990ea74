"""`python -m crawler crawl URL`: the most common job without writing a spider: every page of a
site (its start URL's host), one record each with its URL, title, metadata and main content as
Markdown, text or HTML (crawler/extract.py), with every guarantee of a crawl (politeness,
resume, each record written once)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from ..models import Request, Response
from ..spider import Spider

#: The formats a page's content is written in (the record's field of that name).
FORMATS = ("markdown", "text", "html")


def under(url: str) -> str:
    """The `allow` pattern of the URLs under `url`'s path: its folder when it names a file
    (/docs/intro.html: /docs/...), else the path itself and what is below it (/docs: /docs,
    /docs/..., /docs?q)."""
    parts = urlsplit(url)
    path = parts.path or "/"
    folder, _, last = path.rpartition("/")
    if "." in last:
        path = folder + "/"
    base = re.escape(f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}")
    return f"^{base}" if path.endswith("/") else f"^{base}(?:[/?#]|$)"


class SiteCrawl(Spider):
    """Pages of the start URLs' hosts (scope same-host), each a record; links followed unless
    `follow` is off (`--depth 0`). A page that repeats one crawled before (its body, or nearly
    its text: settings.duplicates, "mark" here) says which in its record's `duplicate_of`."""

    name = "crawl"
    custom_settings: ClassVar[Mapping[str, Any]] = {"duplicates": "mark"}
    format = "markdown"
    follow = True

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        metadata = response.metadata()
        content = (
            response.markdown()
            if self.format == "markdown"
            else response.main_text()
            if self.format == "text"
            else response.main_html()
        )
        yield {
            "url": response.url,
            "title": metadata["title"],
            "metadata": metadata,
            "duplicate_of": response.duplicate_of,
            self.format: content,
        }
        if self.follow:
            for url in response.links():
                yield Request(url)
