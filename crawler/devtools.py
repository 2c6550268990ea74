"""The spider author's loop: one request at a time through the crawl's real fetcher, robots.txt,
address guard and hooks, and one callback run on its response, with no store (the `fetch`,
`parse` and `shell` commands). `Crawler.requester()` makes a Requester from a crawl's settings.
"""

from __future__ import annotations

import contextlib
import html
import inspect
import json
import logging
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import parser, tls
from .browser import Renderer, renders
from .errors import ConfigError, CrawlerError, SpiderError
from .fetcher import Fetcher
from .hooks import Hooks, Retry
from .intercept import as_fetched
from .models import Callback, Request, Response
from .pages import outputs_of, parses
from .pipelines import Pipelines, is_item
from .records import Outcome, State, StoredRequest
from .robots import Robots
from .spider import Spider
from .stats import counting
from .urls import Canonicalizer, Scope

log = logging.getLogger("crawler")

#: Every error status: a developer looking at a page wants to see it, whatever its status.
_ANY_ERROR = frozenset(range(400, 600))


class Requester:
    """Fetches requests one at a time and runs callbacks on their responses (see module).
    A request to render (its own `render`, else `render_all`) is loaded in `renderer`, and its
    page stays open until the next fetch or `aclose()`."""

    def __init__(
        self,
        spider: Spider,
        fetcher: Fetcher,
        robots: Robots | None,
        hooks: Hooks,
        pipelines: Pipelines,
        canonicalizer: Canonicalizer,
        scope: Scope,
        *,
        allow_status: Iterable[int] = (),
        renderer: Renderer | None = None,
        render_all: bool = False,
    ) -> None:
        self.spider = spider
        self._fetcher = fetcher
        self._robots = robots
        self._hooks = hooks
        self._pipelines = pipelines
        self._canonicalizer = canonicalizer
        self._scope = scope
        self._allow_status = frozenset(allow_status)
        self._renderer = renderer
        self._render_all = render_all
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
        if self._hooks.on_request:
            changed = await self._hooks.request(request)
            if changed is None:
                raise CrawlerError(f"process_request dropped the request for {request.url}")
            request = changed
        if self._robots is not None and not await self._robots.allowed(request.url):
            raise CrawlerError(
                f"{request.url} is disallowed by robots.txt (-s obey_robots=false to fetch it)"
            )
        fetched = await self._fetcher.fetch(
            request.url,
            method=request.method,
            headers=request.headers,
            body=request.body,
            cookies=request.cookies,
            session=request.session or "",
            proxy=request.proxy,
            allow_status=_ANY_ERROR,
        )
        await self._page.aclose()  # the last response's page: a new one comes
        rendered = None
        if self._renderer is not None and renders(request.render, self._render_all, fetched):
            rendered = await self._page.enter_async_context(
                self._renderer.render(fetched, session=request.session or "", proxy=request.proxy)
            )
            fetched = as_fetched(fetched, rendered)
        response = Response(
            url=fetched.url,
            status=fetched.status,
            headers=fetched.headers,
            body=fetched.body,
            request=request,
        )
        response.cached = fetched.cached
        response.rendered = rendered
        if self._hooks.on_response:
            try:
                response = await self._hooks.response(request, response)
            except Retry as exc:
                log.warning("process_response asks for a retry of %s: %s", request.url, exc)
        return response

    def in_scope(self, request: Request) -> bool:
        """Whether a crawl from the URLs given would follow `request`."""
        split = self._canonicalizer.split(request.url)
        return split is not None and self._scope.allows(*split)

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
        """What `callback` yields for `response`: items (run through the pipelines and read
        back from their JSON, with `pipelines`), requests, and the counters bumped (drops
        included). A callback error is a SpiderError."""
        counters: dict[str, int] = {}
        items: list[Any] = []
        requests: list[Request] = []
        name = getattr(callback, "__name__", "callback")
        await tls.verify_paths_loaded()
        with counting(counters):
            try:
                result = callback(response)
                if inspect.isasyncgen(result):
                    outputs = [output async for output in result]
                else:
                    if inspect.isawaitable(result):
                        result = await result
                    outputs = list(outputs_of(result))
            except Exception as exc:
                raise SpiderError(
                    response.url, f"{name}() raised {type(exc).__name__}: {exc}"
                ) from exc
        for output in outputs:
            if isinstance(output, Request):
                output.depth = response.request.depth + 1 if response.request else 1
                requests.append(output)
            elif output is not None:
                if not is_item(output):
                    raise SpiderError(
                        response.url,
                        f"{name}() yielded a {type(output).__name__}: yield items or Requests",
                    )
                items.append(output)
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
