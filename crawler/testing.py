"""Test spiders offline: replay recorded responses into their callbacks, deterministically.

Record once, by crawling with the HTTP cache on (a crawl's cache is its recording; a folder
named with http_cache_dir can be committed to git as it is):

    python -m crawler run spiders/books.py -s http_cache=true \\
        -s http_cache_dir=tests/recordings/books -s max_pages=40

Then, in a test (pytest with pytest-asyncio), with no network:

    import pytest
    from crawler.testing import Replay

    pytestmark = pytest.mark.asyncio  # not needed with asyncio_mode = "auto"

    async def test_a_book_page() -> None:
        async with Replay(Books(), "tests/recordings/books") as replay:
            page = await replay.parse(BOOK_URL, callback="parse_book")
        assert page.items == [{"title": ..., ...}]
        assert page.requests == []

A URL that was not recorded fails with NotRecorded (nothing goes out). The spider's hooks run,
its pipelines too with `pipelines=True`; robots.txt is not consulted unless `obey_robots` is
in the settings given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from .crawl.engine import Crawler
from .errors import NotRecorded as NotRecorded  # (re-exported: tests import it from here)
from .models import Request, Response
from .page.devtools import Requester
from .settings import Settings
from .spider import Spider

__all__ = ["NotRecorded", "Replay", "Replayed"]


@dataclass
class Replayed:
    """What one callback made of one recorded page."""

    response: Response
    items: list[Any] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)


class Replay:
    """Replays the recording in `recording` (an http_cache_dir) into `spider`'s callbacks."""

    def __init__(
        self,
        spider: Spider,
        recording: str | Path,
        settings: Settings | None = None,
        *,
        pipelines: bool = False,
    ) -> None:
        folder = Path(recording)
        if not (folder / "http.db").is_file():
            raise NotRecorded(
                f"no recording in {folder}: crawl with -s http_cache=true "
                f"-s http_cache_dir={folder} first"
            )
        base = settings or Settings(obey_robots=False).merge(type(spider).custom_settings)
        self._crawler = Crawler(
            spider,
            base.merge(
                {
                    "http_cache": True,
                    "http_cache_dir": str(folder),
                    "http_cache_policy": "all",
                    "http_cache_ttl": 0,
                    "allow_private_networks": True,
                }
            ),
            transport=_Offline(),
            resolver=_no_lookup,
        )
        self._pipelines = pipelines
        self._context: Any = None
        self._requester: Requester | None = None

    async def __aenter__(self) -> Replay:
        self._context = self._crawler.requester()
        self._requester = await self._context.__aenter__()
        if self._pipelines:
            await self._requester.open_pipelines()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._pipelines and self._requester is not None:
                await self._requester.close_pipelines()
        finally:
            await self._context.__aexit__(et, e, tb)

    async def fetch(self, target: Request | str) -> Response:
        """The recorded response to `target` (a NotRecorded error when there is none)."""
        return await self._live().fetch(target)

    async def parse(
        self,
        target: Request | str,
        callback: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Replayed:
        """Run `callback` (the request's, else `parse`) on the recorded response to `target`:
        the items and requests it yields."""
        requester = self._live()
        request = target if isinstance(target, Request) else Request(target, meta=meta)
        method = requester.callback(callback, request)
        requester.start_at(request.url)  # as a crawl started at this page would judge it
        response = await requester.fetch(request)
        items, requests, _ = await requester.run(method, response, pipelines=self._pipelines)
        return Replayed(response, items, requests)

    def _live(self) -> Requester:
        if self._requester is None:
            raise RuntimeError("use Replay as `async with Replay(...) as replay:`")
        return self._requester


class _Offline(httpx.AsyncBaseTransport):
    """What answers a request the recording misses: nothing goes out."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise NotRecorded(f"{request.method} {request.url} was not recorded")


async def _no_lookup(host: str) -> list[str]:
    return ["192.0.2.1"]  # TEST-NET-1: never reached, since nothing goes out
