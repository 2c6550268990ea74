"""The spider author's loop: one request at a time through the crawl's own page runner (its
fetcher, robots.txt, address guard, hooks and link rules), and one callback run on its response,
with no store (the `fetch`, `parse` and `shell` commands, and testing.Replay).
`Crawler.requester()` makes a Requester from a crawl's settings.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .. import parser
from ..errors import ConfigError, SpiderError
from ..models import Callback, Request, Response
from ..records import Outcome, State, StoredRequest
from ..spider import Spider
from ..stats import counting
from ..urls import Canonicalizer, Scope
from .pipelines import Pipelines
from .runner import PageRunner, parses

log = logging.getLogger("crawler")


class Requester:
    """Fetches requests one at a time and runs callbacks on their responses (see module),
    through the crawl's own page runner: the same hooks, robots.txt, redirects in scope,
    rendering, and rules for what a callback's items and requests come to. A rendered
    response's page stays open until the next fetch or `aclose()`."""

    def __init__(
        self,
        spider: Spider,
        runner: PageRunner,
        pipelines: Pipelines,
        canonicalizer: Canonicalizer,
        scope_of: Callable[[Iterable[str]], Scope],
        *,
        allow_status: Iterable[int] = (),
    ) -> None:
        self.spider = spider
        self._runner = runner
        self._pipelines = pipelines
        self._canonicalizer = canonicalizer
        self._scope_of = scope_of
        self._allow_status = frozenset(allow_status)
        self._page = contextlib.AsyncExitStack()

    async def aclose(self) -> None:
        """Close the page of the last rendered response, if one is open."""
        await self._page.aclose()

    async def fetch(self, target: Request | str) -> Response:
        """The response to `target` (a URL, or a Request), whatever its status. Raises a
        ConfigError for a URL that cannot be fetched, CrawlerError when robots.txt disallows
        it or a hook drops it, and FetchError when it fails."""
        request = target if isinstance(target, Request) else _request(target)
        split = self._canonicalizer.split(request.url)
        if split is None:
            invalid = self._canonicalizer.invalid(request.url)
            why = invalid[2] if invalid else "not an absolute http(s) URL"
            raise ConfigError(f"cannot fetch {request.url!r}: {why}")
        request.url = split[0]  # the URL a crawl fetches (and a recording holds)
        await self._page.aclose()  # the last response's page: a new one comes
        return await self._runner.response_to(request, split[1], self._page)

    def start_at(self, url: str) -> None:
        """Judge requests as a crawl started at `url` would (the spider's scope from its
        host), as when the URL was given at the start."""
        split = self._canonicalizer.split(url)
        if split is not None:
            self._runner.scope = self._scope_of([split[1]])

    def callback(self, name: str | None, request: Request) -> Callback:
        """The callback `name` (a ConfigError when the spider has none), else the request's."""
        if name:
            return self.spider.callback(name)
        return request.callback or self.spider.callback("parse")

    def wants(self, request: Request, response: Response) -> str | None:
        """Why a crawl would not run a callback on `response` (an error status, or content it
        does not parse), or None when it would."""
        if response.status >= 400 and response.status not in (
            self._allow_status | set(request.allow_status)
        ):
            return f"status {response.status}"
        content_type = response.headers.get("content-type")
        if parses(request, content_type):
            return None
        return f"not parsed: {parser.media_type(content_type)}"

    async def run(
        self, callback: Callback, response: Response, *, pipelines: bool = False
    ) -> tuple[list[Any], list[Request], dict[str, int]]:
        """What `callback` yields for `response`, as a crawl keeps it: items (none from a
        noindex page; run through the pipelines and read back from their JSON, with
        `pipelines`), the requests a crawl would queue (in scope, not too deep, the first of
        duplicates; none from a nofollow page), and the counters bumped (drops included). A
        callback error is a SpiderError."""
        counters: dict[str, int] = {}
        with counting(counters):
            items, requests = await self._runner.outputs(callback, response)
        if pipelines and items:
            outcome = await self._pipelines.process(
                Outcome(_row(response.url), State.DONE, 1, produced=items, counters=counters)
            )
            if outcome.state is State.FAILED:
                raise SpiderError(response.url, outcome.message or "a pipeline failed")
            items = [json.loads(text) for text in outcome.items]
        return items, requests, counters

    async def open_pipelines(self) -> None:
        await self._pipelines.open()

    async def close_pipelines(self) -> None:
        await self._pipelines.close()


def _request(url: str) -> Request:
    try:
        return Request(url)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def _row(url: str) -> StoredRequest:
    """A stand-in store row for a page the pipelines see outside a crawl."""
    return StoredRequest(0, url, "", "parse", 0, 0, None, False, 0)


_HEAD = re.compile(rb"<head[^>]*>", re.IGNORECASE)


def page_file(response: Response) -> Path:
    """The page as the crawler got it, in a temporary file a web browser can open (`view`):
    an HTML page without a `<base href>` gets one, so that its relative links, styles and
    images resolve against the page's URL."""
    body = response.body
    is_html = parser.is_html(response.headers.get("content-type"))
    if is_html and response.tree.css_first("base[href]") is None:
        base = f'<base href="{html.escape(response.url, quote=True)}">'.encode()
        head = _HEAD.search(body)
        at = head.end() if head else 0
        body = body[:at] + base + body[at:]
    with tempfile.NamedTemporaryFile(
        "wb", prefix="crawler-", suffix=".html" if is_html else ".txt", delete=False
    ) as out:
        out.write(body)
    return Path(out.name)
