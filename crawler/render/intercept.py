"""A rendered page's requests: the browser makes none itself, each one is answered here (see
browser.py). The page's own document comes from the crawl's fetch; anything else is fetched by
the crawl's Fetcher when the crawl's scope allows its URL (the fetcher's address guard then checks
where it goes), and refused otherwise. Takes Playwright's route objects; imports no Playwright.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import FetchError, HTTPStatusError
from ..net.fetcher import Fetched, Fetcher
from ..records import ErrorKind

log = logging.getLogger("crawler")

#: Response headers that describe the body as it came over the wire, not as it is handed on.
_WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})
#: Request headers the fetcher sets itself (or that name the browser's own connection).
_OWN_HEADERS = frozenset(
    {"accept-encoding", "connection", "content-length", "host", "keep-alive", "user-agent"}
)


@dataclass(slots=True)
class Rendered:
    """A rendered page: its DOM as HTML (UTF-8), the live Playwright `page`, and what became
    of the requests the page made: fetched, refused (out of scope or off-limits addresses),
    skipped (`block_resources`) and failed."""

    html: bytes
    page: Any
    requests: int = 0
    blocked: int = 0
    skipped: int = 0
    failed: int = 0
    #: Set when the caller handed the page to user code: it is closed, not reused.
    used: bool = False


@dataclass(slots=True)
class Load:
    """One page load in progress: the document to answer its navigation with, the session
    its requests belong to, and what became of them."""

    document: Fetched
    session: str
    proxy: str | None = None
    served: bool = False
    counts: Rendered = field(default_factory=lambda: Rendered(b"", None))
    #: The tasks answering its requests (cancelled when the page is let go).
    answering: set[asyncio.Task[None]] = field(default_factory=set)


class Interceptor:
    """Answers the requests of the pages in `loads` (a page not loading gets none answered).
    `allows(url)` is the crawl's scope; `block` are resource types not loaded; `charge(url)`
    is told of every request that went out (not the document, not what the HTTP cache
    answered), for the rate limits."""

    def __init__(
        self,
        *,
        fetcher: Fetcher,
        allows: Callable[[str], bool],
        block: frozenset[str],
        charge: Callable[[str], None] | None = None,
    ) -> None:
        self._fetcher = fetcher
        self._allows = allows
        self._block = block
        self._charge = charge
        #: The load each page is busy with.
        self.loads: dict[Any, Load] = {}

    async def route(self, route: Any) -> None:
        """Answer one request a page makes: its document from the crawl's fetch, anything else
        fetched by the crawl's fetcher if it may be, refused otherwise."""
        request = route.request
        try:
            frame = request.frame
            load = self.loads.get(frame.page)
        except Exception:  # a worker's request has no frame
            frame = load = None
        if load is None:  # an idle page's scripts, a popup, a worker: nothing to load for
            log.debug("render: refused %s (no page is loading)", request.url)
            await _abort(route, "blockedbyclient")
            return
        counts = load.counts
        task = asyncio.current_task()
        if task is not None:
            load.answering.add(task)
        try:
            if not load.served:
                if (
                    frame is not None
                    and frame.parent_frame is None
                    and request.is_navigation_request()
                ):  # the page's own document, as the crawl fetched it
                    load.served = True
                    await _fulfill(route, load.document)
                else:  # the page's last document, still asking as it goes
                    await _abort(route, "blockedbyclient")
                return
            if request.resource_type in self._block:
                counts.skipped += 1
                await _abort(route, "blockedbyclient")
                return
            url = request.url
            if not self._allows(url):
                counts.blocked += 1
                log.debug("render: refused %s (out of scope)", url)
                await _abort(route, "blockedbyclient")
                return
            fetched = await self._fetch(request, load)
        except _Refused as exc:
            counts.blocked += 1
            log.debug("render: refused %s: %s", request.url, exc)
            await _abort(route, "blockedbyclient")
            return
        except FetchError as exc:
            counts.failed += 1
            log.debug("render: %s failed: %s", request.url, exc.message)
            await _abort(route, "failed")
            return
        except Exception as exc:  # the page went away meanwhile, or the fetcher's transport
            counts.failed += 1  # failed in a way of its own (a replay's missing recording)
            log.debug("render: %s: %s", request.url, exc)
            await _abort(route, "failed")
            return
        finally:
            if task is not None:
                load.answering.discard(task)
        counts.requests += 1
        if self._charge is not None and not fetched.cached:
            self._charge(request.url)
        with contextlib.suppress(Exception):
            await _fulfill(route, fetched)

    async def _fetch(self, request: Any, load: Load) -> Fetched:
        """A page's request, made by the crawl's fetcher: any status is an answer."""
        headers = {
            name: value
            for name, value in (await request.all_headers()).items()
            if not name.startswith(":") and name not in _OWN_HEADERS
        }
        try:
            return await self._fetcher.fetch(
                request.url,
                method=request.method,
                headers=headers,
                body=request.post_data_buffer,
                session=load.session,
                proxy=load.proxy,
                error_body=True,
                redirect=lambda target: target if self._allows(target) else None,
            )
        except HTTPStatusError as exc:
            if exc.response is None:
                raise
            answer: Fetched = exc.response
            return answer
        except FetchError as exc:
            if exc.kind in (ErrorKind.BLOCKED_ADDRESS, ErrorKind.REDIRECT_OUT_OF_SCOPE):
                raise _Refused(exc.url, exc.message) from None
            raise


def as_fetched(document: Fetched, rendered: Rendered) -> Fetched:
    """`document` with the rendered DOM for its body (UTF-8 HTML)."""
    headers = document.headers.copy()
    headers["content-type"] = "text/html; charset=utf-8"
    return dataclasses.replace(document, body=rendered.html, headers=headers)


class _Refused(FetchError):
    """A page's request went where the crawl may not go."""


async def _fulfill(route: Any, fetched: Fetched) -> None:
    headers: dict[str, str] = {}
    for name, value in fetched.headers.multi_items():
        if name in _WIRE_HEADERS:
            continue
        headers[name] = f"{headers[name]}\n{value}" if name in headers else value
    await route.fulfill(status=fetched.status, headers=headers, body=fetched.body)


async def _abort(route: Any, reason: str) -> None:
    with contextlib.suppress(Exception):  # the page went away meanwhile
        await route.abort(reason)
