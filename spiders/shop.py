"""The books spider with the extension points real projects use: pipelines that clean, validate
(pydantic) and deduplicate items, a hook adding an auth header, a hook that spots ban pages,
counters, and an optional PostgreSQL sink.

    pip install pydantic
    python -m crawler demo --serve &            # or any books.toscrape.com-like shop
    python -m crawler run spiders/shop.py -a start_urls=http://127.0.0.1:PORT/ -o books.jsonl
    python -m crawler run spiders/shop.py -a items_dsn=postgresql://postgres@127.0.0.1/test

`python -m crawler stats --store shop.db` then shows the items dropped, by reason, and the
spider's counters.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import pydantic

from crawler import DropItem, PostgresSink, Request, Response, Retry, Spider

log = logging.getLogger("shop")
RATINGS = {"One": 1, "Two": 2, "Three": 3, "Four": 4, "Five": 5}


class Book(pydantic.BaseModel):
    """What a stored book looks like. A page that does not fit is dropped, and counted under
    the first error ("Book.price: Input should be greater than 0")."""

    url: str
    title: str = pydantic.Field(min_length=1)
    price: float = pydantic.Field(gt=0)
    in_stock: bool
    rating: int | None = pydantic.Field(default=None, ge=1, le=5)
    upc: str = pydantic.Field(pattern=r"^[0-9a-f]{16}$")


# -- pipelines: each item goes through them, in order, before its page is committed ----------


class Clean:
    """Turn the page's text into values: "£51.77" -> 51.77, "Three" -> 3, trimmed titles."""

    def process_item(self, item: dict[str, Any], spider: Spider) -> dict[str, Any]:
        price = re.sub(r"[^0-9.]", "", item.get("price") or "")
        return {
            **item,
            "title": " ".join((item.get("title") or "").split()),
            "price": float(price) if price else 0.0,
            "rating": RATINGS.get(item.get("rating") or ""),
        }


class Validate:
    """The item as a Book; a pydantic ValidationError drops it (with the error as reason)."""

    def process_item(self, item: dict[str, Any], spider: Spider) -> Book:
        return Book.model_validate(item)


class Dedup:
    """One item per UPC, across resumes: the UPCs seen live in `spider.state`, which is saved
    with every commit. Pipelines run in commit order, so the state saved always matches the
    items stored, even after kill -9."""

    def process_item(self, item: Book, spider: Spider) -> Book:
        seen = spider.state.setdefault("upcs", {})
        if item.upc in seen:
            raise DropItem("duplicate upc")
        seen[item.upc] = item.url
        return item


# -- hooks: every request before it goes out, every response before its callback ------------


class AuthHeader:
    """Sign every request (retries included) with a token from the environment."""

    def __init__(self) -> None:
        self.token = os.environ.get("SHOP_TOKEN", "demo-token")

    def process_request(self, request: Request, spider: Spider) -> Request:
        request.headers = {**(request.headers or {}), "Authorization": f"Bearer {self.token}"}
        return request


class BanDetector:
    """A ban page often comes with status 200: fetch it again later (with the usual back-off,
    up to max_retries) instead of parsing it."""

    MARKERS = ("captcha", "access denied", "unusual traffic")

    async def process_response(self, request: Request, response: Response, spider: Spider) -> None:
        title = (response.css_first("title").text() if response.css_first("title") else "").lower()
        if any(marker in title for marker in self.MARKERS):
            spider.stats.inc("ban pages")
            raise Retry(f"ban page: {title.strip()[:60]}")


class Shop(Spider):
    name = "shop"
    start_urls = ["https://books.toscrape.com/"]
    custom_settings = {"per_domain_concurrency": 8}
    pipelines = [Clean(), Validate(), Dedup()]
    hooks = [AuthHeader(), BanDetector()]
    #: -a items_dsn=postgresql://... also upserts every stored book into a PostgreSQL table
    items_dsn = ""

    def __init__(self, **arguments: str) -> None:
        super().__init__(**arguments)
        if self.items_dsn:
            self.sinks = [PostgresSink(self.items_dsn, table="shop_books")]

    async def opened(self) -> None:
        log.info("resuming with %d books seen", len(self.state.get("upcs", {})))

    async def closed(self, reason: str) -> None:
        log.info("crawl %s: %d distinct books", reason, len(self.state.get("upcs", {})))

    async def parse(self, response: Response) -> Any:
        """A catalogue page: every book on it, then the next page."""
        for link in response.css("article.product_pod h3 a"):
            yield response.follow(link, callback=self.parse_book)
        next_page = response.css_first("li.next a")
        if next_page is not None:
            yield response.follow(next_page)

    async def parse_book(self, response: Response) -> Any:
        self.stats.inc("book pages")
        main = response.css_first("div.product_main")
        if main is None:
            return
        rating = main.css_first("p.star-rating")
        upc = response.css_first("table.table-striped td")
        yield {
            "url": response.url,
            "title": main.css_first("h1").text(),
            "price": main.css_first("p.price_color").text(),
            "in_stock": main.css_first("p.availability").text(strip=True).startswith("In stock"),
            "rating": next(
                (w for w in (rating.attributes.get("class") or "").split() if w in RATINGS), None
            )
            if rating is not None
            else None,
            "upc": upc.text(strip=True) if upc is not None else "",
        }
