"""Pages: turn one leased request into an Outcome (robots, fetch, spider callback, what it yielded).

Page errors become outcomes (failed, or queued again for a retry); only bugs and cancellation
escape. Takes plain values; reads no settings and writes no store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import urlsplit

from .. import parser
from ..clock import Clock
from ..errors import (
    CrawlerError,
    FetchConnectError,
    FetchError,
    FetchTimeout,
    HTTPStatusError,
    InvalidURL,
    Retry,
    RobotsUnavailable,
    SpiderError,
)
from ..models import Callback, Failure, Request, Response
from ..net import tls
from ..net.fetcher import Fetched, Fetcher, recording
from ..net.politeness import Health
from ..net.robots import Robots
from ..records import ErrorKind, Exchange, NewRequest, Outcome, Revisit, State, StoredRequest
from ..render.browser import Renderer, renders
from ..render.intercept import Rendered, as_fetched
from ..settings import HostSettings
from ..spider import Spider
from ..stats import CACHE_HITS, DUPLICATES, RENDER, REVISIT, counting
from ..stats import bump as add_counter
from ..urls import Canonicalizer, Scope
from .duplicates import Duplicates
from .files import Files
from .hooks import Hooks
from .pipelines import is_item
from .rules import LinkRules, RetryRules
from .stored import from_stored, identity, request_key, to_stored

log = logging.getLogger("crawler")


class PageRunner:
    """Processes pages for one crawl. `release(host, health, wait_until)` is called as soon as
    a fetch ends, so the host's slot frees up before the callback runs; `health` is what the
    fetch says about the host (the circuit breaker's input), and `wait_until` holds the whole
    host after a 429/503 Retry-After. Retry times are on `clock`. Counts links it drops (off
    scope, too deep). Pages whose request asks for rendering (`render_all`: every page) are
    loaded in `renderer` once fetched; the host's slot is held until the page is ready."""

    def __init__(
        self,
        *,
        spider: Spider,
        fetcher: Fetcher,
        robots: Robots | None,
        links: LinkRules,
        retries: RetryRules,
        canonicalizer: Canonicalizer,
        obey_nofollow: bool,
        release: Release,
        allow_status: Iterable[int] = (),
        clock: Clock | None = None,
        known_urls: int = 200_000,
        hooks: Hooks | None = None,
        refund: Callable[[str], None] | None = None,
        renderer: Renderer | None = None,
        render_all: bool = False,
        host_settings: Callable[[str], HostSettings | None] | None = None,
        duplicates: Duplicates | None = None,
        files: Files | None = None,
        archive: bool = False,
    ) -> None:
        self._spider = spider
        self._fetcher = fetcher
        self._robots = robots
        self._links = links
        self._retries = retries
        self._canonicalizer = canonicalizer
        self._obey_nofollow = obey_nofollow
        self._release = release
        #: Statuses >= 400 handed to callbacks for every request (the spider's allow_status).
        self._allow_status = frozenset(allow_status)
        self._clock = clock or Clock()
        self._hooks = hooks
        self._refund = refund
        self._renderer = renderer
        self._render_all = render_all
        #: The spider's settings for a host (its `host_settings`), if it has any.
        self._host_settings = host_settings
        #: Pages crawled before, when the crawl looks for duplicates.
        self._duplicates = duplicates
        #: Where the files items name go (settings.files_store), if anywhere.
        self._files = files
        #: Whether pages' exchanges are kept for the web archive (settings.warc_file).
        self._archive = archive
        #: URLs already handled in this run (queued, or out of scope): a bounded filter in front
        #: of the store's unique index, so a link seen on every page costs one dict lookup.
        self._known: OrderedDict[str, None] = OrderedDict()
        self._known_max = known_urls
        self.dropped_offsite = 0
        self.dropped_depth = 0
        self.dropped_nofollow = 0
        self.dropped_noindex = 0

    @property
    def scope(self) -> Scope:
        """Which URLs the crawl visits (the one-page tools move it to where they start)."""
        return self._links.scope

    @scope.setter
    def scope(self, scope: Scope) -> None:
        self._links = dataclasses.replace(self._links, scope=scope)

    # -- one page outside a crawl: the fetch, parse and shell commands, testing.Replay -------

    async def response_to(
        self, request: Request, host: str, pages: contextlib.AsyncExitStack
    ) -> Response:
        """The response to `request` (for `host`) as a crawl gets it: through the request
        hooks (which may change its URL within its host only), robots.txt, the fetch (whose
        redirects stay in scope), rendering (the page open until `pages` closes) and the
        response hooks; whatever its status. Raises CrawlerError when a hook drops or fails
        it or robots.txt disallows it, and FetchError when the fetch fails."""
        stored = _stand_in(request, host)
        if self._host_settings is not None:
            _for_host(request, self._host_settings(host))
        if self._hooks is not None and self._hooks.on_request:
            changed = await self._request_hooks(request, stored)
            if not isinstance(changed, Request):
                raise CrawlerError(f"{request.url}: {changed.message}")
            request = changed
        if self._robots is not None and not await self._robots.allowed(request.url):
            raise CrawlerError(
                f"{request.url} is disallowed by robots.txt (-s obey_robots=false to fetch it)"
            )
        fetched = await self._fetch(request, stored, _ANY_ERROR)
        rendered = None
        if self._renderer is not None and renders(request.render, self._render_all, fetched):
            fetched, rendered = await self._rendered(request, fetched, pages)
        response = self._response(request, fetched)
        assert response is not None
        response.rendered = rendered
        if self._hooks is not None and self._hooks.on_response:
            try:
                response = await self._hooks.response(request, response)
            except Retry as exc:
                log.warning("process_response asks for a retry of %s: %s", request.url, exc)
        return response

    async def outputs(
        self, callback: Callback, response: Response
    ) -> tuple[list[Any], list[Request]]:
        """What `callback` yields for `response`, as a crawl keeps it: the items (none from a
        noindex page) and the requests it would queue (in scope, not too deep, the first of
        duplicates; none from a nofollow page). Raises SpiderError."""
        request = response.request
        assert request is not None
        kept: list[Request] = []
        request.callback = callback  # the callback a crawl would have stored with the request
        name = getattr(callback, "__name__", "callback")
        produced, _ = await self._produce(request, response, callback, name, 0, kept)
        return produced, kept

    def redirect_target(self, url: str) -> str | None:
        """Where a redirect to `url` goes: the URL to request, or None when it is out of scope.
        Raises InvalidURL for a URL no browser would fetch."""
        split = self._canonicalizer.split(url)
        if split is None:
            invalid = self._canonicalizer.invalid(url)
            if invalid is not None:
                raise InvalidURL(url, f"redirected to an invalid URL: {invalid[2]}")
            return None
        return split[0] if self._links.scope.allows(*split) else None

    async def run(self, stored: StoredRequest) -> Outcome:
        """The outcome of fetching and parsing `stored` (of its errback, when it finally
        fails), with the cookie jar its fetch changed."""
        request = from_stored(self._spider, stored)
        counters: dict[str, int] = {}
        # the spider's stats.inc() while the page runs count with it; the host's slot is freed
        # once, whatever happens
        exchanges: list[Exchange] | None = [] if self._archive else None
        with counting(counters), recording(exchanges), _Slot(self._release, stored.host) as slot:
            if self._renderer is None:
                outcome = await self._through(stored, request, None, slot)
            else:
                async with contextlib.AsyncExitStack() as pages:  # a rendered page, until parsed
                    outcome = await self._through(stored, request, pages, slot)
        outcome.exchanges = exchanges or None
        outcome.counters = counters or None
        session = request.session or ""
        jar = self._fetcher.jars.take(session)
        if jar is not None:
            outcome.jars = {session: jar}
        return outcome

    async def _through(
        self,
        stored: StoredRequest,
        request: Request,
        pages: contextlib.AsyncExitStack | None,
        slot: _Slot,
    ) -> Outcome:
        """A page through the hooks, robots.txt, the fetch, rendering and the callback. The
        host's slot is freed as soon as the fetch (and the rendering) says how the host did,
        before the callback runs; on any other way out, by `run`."""
        attempts = stored.attempts + 1
        if self._host_settings is not None:
            _for_host(request, self._host_settings(stored.host))
        if self._hooks is not None and self._hooks.on_request:
            changed = await self._request_hooks(request, stored)
            if not isinstance(changed, Request):
                slot.free()
                return await self._errback(request, changed, None)
            request = changed
        started: float | None = None
        try:
            if self._robots is not None and not await self._robots.allowed(request.url):
                slot.free()
                return await self._errback(request, _disallowed(stored, attempts), None)
            started = time.monotonic()
            fetched = await self._fetch(request, stored, self._statuses_allowed(request))
        except FetchError as exc:
            return await self._fetch_failed(stored, request, attempts, exc, started, slot)
        latency = time.monotonic() - started
        if stored.revisit and fetched.status == 304:  # unchanged: its items stay
            slot.free(Health.OK)
            add_counter(REVISIT + Revisit.UNCHANGED)
            return _unchanged(stored, attempts, fetched, latency)
        rendered = None
        if self._renderer is not None and renders(request.render, self._render_all, fetched):
            assert pages is not None
            try:
                fetched, rendered = await self._rendered(request, fetched, pages)
            except FetchError as exc:
                slot.free()
                return await self._failed_after_fetch(
                    stored, request, attempts, exc, fetched, latency, None
                )
            latency = time.monotonic() - started
        response = self._response(request, fetched)
        assert response is not None
        response.rendered = rendered
        if fetched.cached:
            add_counter(CACHE_HITS)
            if self._refund is not None:
                self._refund(stored.host)
        if self._hooks is not None and self._hooks.on_response:
            hooked = await self._response_hooks(
                stored, request, attempts, fetched, latency, response, slot
            )
            if isinstance(hooked, Outcome):
                return hooked
            response = hooked
        slot.free(_status_health(fetched.status))
        log.debug("%d %s", fetched.status, fetched.url)
        outcome = await self._parsed(stored, request, attempts, fetched, response)
        outcome.latency = latency
        outcome.size = len(fetched.body)
        if stored.revisit and outcome.state is State.DONE:
            outcome.revisit = Revisit.CHANGED  # its items are replaced by these
            add_counter(REVISIT + Revisit.CHANGED)
        return _validated(outcome, fetched)

    def _statuses_allowed(self, request: Request) -> frozenset[int]:
        """The statuses that are answers for `request`, not errors."""
        if request.allow_status:
            return self._allow_status.union(request.allow_status)
        return self._allow_status

    async def _fetch_failed(
        self,
        stored: StoredRequest,
        request: Request,
        attempts: int,
        exc: FetchError,
        started: float | None,
        slot: _Slot,
    ) -> Outcome:
        """The fetch failed (or robots.txt could not be had, before it: `started` None): a
        retry, or a failure through the errback; the host's health hears of it."""
        outcome, wait_until = self._failed(stored, attempts, exc)
        if started is not None and exc.sent:
            outcome.latency = time.monotonic() - started
        slot.free(health_of(exc), wait_until, exc.message, retry=stored.attempts > 0)
        gone = isinstance(exc, HTTPStatusError) and exc.status in _GONE
        if stored.revisit and outcome.state is State.FAILED and gone:
            outcome.revisit = Revisit.GONE  # its items go with it
            add_counter(REVISIT + Revisit.GONE)
        if outcome.state is State.FAILED:
            response = getattr(exc, "response", None)
            return await self._errback(request, outcome, self._response(request, response))
        return outcome

    async def _failed_after_fetch(
        self,
        stored: StoredRequest,
        request: Request,
        attempts: int,
        exc: FetchError,
        fetched: Fetched,
        latency: float,
        response: Response | None,
    ) -> Outcome:
        """A page fetched, then failed (its rendering, or a hook's Retry): a retry, or a
        failure through the errback."""
        outcome, _ = self._failed(stored, attempts, exc)
        outcome.status, outcome.latency = fetched.status, latency
        if outcome.state is State.FAILED:
            return await self._errback(request, outcome, response)
        return outcome

    async def _response_hooks(
        self,
        stored: StoredRequest,
        request: Request,
        attempts: int,
        fetched: Fetched,
        latency: float,
        response: Response,
        slot: _Slot,
    ) -> Response | Outcome:
        """The response through the hooks' process_response: the response to parse, or the
        page's outcome (a hook asked for a retry, or failed)."""
        assert self._hooks is not None
        try:
            return await self._hooks.response(request, response)
        except Retry as exc:
            slot.free(Health.ERROR)
            asked = _RetryAsked(stored.url, exc.reason)
            return await self._failed_after_fetch(
                stored, request, attempts, asked, fetched, latency, response
            )
        except Exception as exc:
            slot.free(_status_health(fetched.status))
            message = f"process_response raised {type(exc).__name__}: {exc}"
            log.error("%s: %s", stored.url, message, exc_info=exc)
            return Outcome(
                stored,
                State.FAILED,
                attempts,
                status=fetched.status,
                error=ErrorKind.SPIDER,
                message=message,
                latency=latency,
            )

    async def _fetch(
        self, request: Request, stored: StoredRequest, allow_status: frozenset[int]
    ) -> Fetched:
        """The fetch of `request` (the row `stored`: a revisit asks conditionally), its
        redirects kept in scope; statuses in `allow_status` are answers, not errors."""
        return await self._fetcher.fetch(
            request.url,
            method=request.method,
            headers=_conditional(request.headers, stored) if stored.revisit else request.headers,
            body=request.body,
            cookies=request.cookies,
            session=request.session or "",
            proxy=request.proxy,
            backend=request.fetch_backend,
            allow_status=allow_status,
            error_body=request.errback is not None,
            redirect=self.redirect_target,
        )

    async def _rendered(
        self, request: Request, fetched: Fetched, pages: contextlib.AsyncExitStack
    ) -> tuple[Fetched, Rendered]:
        """`fetched` as the browser rendered it (its DOM as UTF-8 HTML), and the rendered
        page, open until `pages` closes. Raises RenderError."""
        assert self._renderer is not None
        done: list[Rendered] = []
        pages.callback(_count_requests, done)  # once the page is closed: what it asked for
        rendered = await pages.enter_async_context(
            self._renderer.render(fetched, session=request.session or "", proxy=request.proxy)
        )
        done.append(rendered)
        add_counter(RENDER + "pages")
        return as_fetched(fetched, rendered), rendered

    def _response(self, request: Request, fetched: Fetched | None) -> Response | None:
        if fetched is None:
            return None
        response = Response(
            url=fetched.url,
            status=fetched.status,
            headers=fetched.headers,
            body=fetched.body,
            request=request,
        )
        response.nofollow = self._obey_nofollow
        response.cached = fetched.cached
        return response

    async def _request_hooks(self, request: Request, stored: StoredRequest) -> Request | Outcome:
        """The request the process_request hooks make of `request`, or the outcome of a
        request they dropped (or failed on)."""
        assert self._hooks is not None
        attempts = stored.attempts + 1
        try:
            changed = await self._hooks.request(request)
            if changed is not None:
                changed = _checked(changed)
            if changed is not None and changed.url != stored.url:  # (in place, or a new one)
                split = self._canonicalizer.split(changed.url)
                if split is None or split[1] != stored.host:
                    raise ValueError(
                        f"it moved the request to {changed.url!r}: a hook may change a request's "
                        "URL within its host only (politeness is kept per host)"
                    )
        except Exception as exc:
            message = f"process_request raised {type(exc).__name__}: {exc}"
            log.error("%s: %s", stored.url, message, exc_info=exc)
            return Outcome(stored, State.FAILED, attempts, error=ErrorKind.SPIDER, message=message)
        if changed is None:
            log.debug("dropped by process_request: %s", stored.url)
            return Outcome(
                stored,
                State.FAILED,
                attempts,
                error=ErrorKind.IGNORED,
                message="dropped by process_request",
            )
        if changed is not request and changed.callback is None:
            changed.callback = request.callback  # a new Request for the same page
        return changed

    async def _parsed(
        self,
        stored: StoredRequest,
        request: Request,
        attempts: int,
        fetched: Fetched,
        response: Response,
    ) -> Outcome:
        """The outcome of a fetched page: the callback's items and links."""
        final = self._canonicalizer.split(fetched.url) if fetched.redirects else None
        final_key = None
        if final is not None:
            body = request.body if fetched.method == request.method else None
            canonical = self._canonicalizer.key(final[0])
            final_key = identity(fetched.method, canonical, body, request.session, final[0])
        content_type = response.headers.get("content-type")
        if not parses(request, content_type):
            return Outcome(
                stored,
                State.DONE,
                attempts,
                status=fetched.status,
                final_url=final,
                final_key=final_key,
                message=f"not parsed: {parser.media_type(content_type)}",
            )
        seen = None
        if self._duplicates is not None:
            await self._duplicates.catch_up()
            seen = self._duplicates.judge(response)
            response.duplicate_of = seen.duplicate_of
        try:
            assert request.callback is not None
            produced, links = await self._produce(
                request, response, request.callback, request.callback_name, stored.id
            )
            files = None
            if self._files is not None and produced:
                try:
                    files = await self._files.fill(produced, response.url)
                except CrawlerError as exc:  # an item's file_urls is not a list of URLs
                    raise SpiderError(response.url, str(exc)) from exc
        except SpiderError as exc:
            log.error("%s", exc, exc_info=exc.__cause__)
            return Outcome(
                stored,
                State.FAILED,
                attempts,
                status=fetched.status,
                error=ErrorKind.SPIDER,
                message=exc.message,
            )
        if seen is not None and seen.duplicate_of is not None and links:
            assert self._duplicates is not None
            if self._duplicates.nofollow:
                add_counter(DUPLICATES + "unfollowed", len(links))
                links = []
        return Outcome(
            stored,
            State.DONE,
            attempts,
            status=fetched.status,
            produced=produced,
            links=links,
            final_url=final,
            final_key=final_key,
            fingerprint=seen,
            files=files or None,
        )

    async def _produce(
        self,
        request: Request,
        response: Response,
        callback: Callback,
        name: str,
        parent: int,
        kept: list[Request] | None = None,
    ) -> tuple[list[Any], list[NewRequest]]:
        """What `callback` yields for `response` (to `request`, the row `parent`), by the
        crawl's rules: its items (none from a noindex page), and the requests to queue (in
        scope, not seen, not too deep; none from a nofollow page). `kept` receives the Request
        each queued one was made of. Raises SpiderError."""
        produced, links = await self._outputs(
            request, response.url, name, lambda: callback(response), parent, kept
        )
        if self._obey_nofollow and (produced or links):
            directives = response.robots_directives
            if "noindex" in directives and produced:
                self.dropped_noindex += len(produced)
                produced = []
            if "nofollow" in directives and links:
                self.dropped_nofollow += len(links)
                links = []
                if kept is not None:
                    kept.clear()
        return produced, links

    async def _errback(
        self, request: Request, outcome: Outcome, response: Response | None
    ) -> Outcome:
        """A request finally failed: its errback (if it has one) may yield items and requests,
        kept with the failure. An errback that raises keeps nothing (and says so)."""
        errback = request.errback
        if errback is None:
            return outcome
        failure = Failure(
            request, outcome.error or "", outcome.message or "", outcome.status, response
        )
        try:
            outcome.produced, outcome.links = await self._outputs(
                request,
                request.url,
                request.errback_name or "",
                lambda: errback(request, failure),
                outcome.request.id,
            )
        except SpiderError as exc:
            log.error("%s", exc, exc_info=exc.__cause__)
            outcome.message = f"{outcome.message}; {exc.message}"
        return outcome

    def _failed(
        self, stored: StoredRequest, attempts: int, exc: FetchError
    ) -> tuple[Outcome, float | None]:
        """The outcome of a failed fetch (a retry, or a failure: see RetryRules), and until
        when the whole host must wait (a Retry-After), if it must."""
        verdict = self._retries.verdict(exc, attempts, self._clock.now(), random.random())
        if verdict.state is State.QUEUED:
            log.debug("retrying %s (%s), attempt %d", stored.url, exc.message, attempts)
        else:
            log.warning("failed %s: %s", stored.url, verdict.message)
        outcome = Outcome(
            stored,
            verdict.state,
            attempts,
            status=exc.status if isinstance(exc, HTTPStatusError) else None,
            error=exc.kind,
            message=verdict.message,
            not_before=verdict.not_before,
        )
        return outcome, verdict.wait_until

    def remember_queued(self, requests: Iterable[NewRequest]) -> None:
        """`requests` are queued in this run: links to the plain GETs among them (the ones a
        link is deduplicated against by URL) are left out."""
        for request in requests:
            plain = request.method is None and request.body is None and not request.spec
            if plain and request.error is None:
                self._remember(request.url)

    def _remember(self, url: str) -> None:
        known = self._known
        known[url] = None
        if len(known) > self._known_max:
            known.popitem(last=False)  # the oldest: FIFO keeps the filter bounded, in O(1)

    async def _outputs(
        self,
        source: Request,
        where: str,
        name: str,
        produce: Callable[[], Any],
        parent: int,
        kept: list[Request] | None = None,
    ) -> tuple[list[Any], list[NewRequest]]:
        """Run a callback or errback (`produce()` calls it) and collect what it yielded:
        items (as they are: the pipelines see them next), and new requests (in scope, not
        seen, not too deep). `source` is the request it handles, `where` the URL named in
        errors, `parent` its row id."""
        items: list[Any] = []
        links: list[NewRequest] = []
        seen: set[str] = set()
        await tls.verify_paths_loaded()  # spider code may use aiohttp's SSL contexts
        try:
            result = produce()
            if inspect.isasyncgen(result):
                async for output in result:
                    self._collect(output, source, where, parent, items, links, seen, kept)
            else:
                if inspect.isawaitable(result):
                    result = await result
                for output in outputs_of(result):
                    self._collect(output, source, where, parent, items, links, seen, kept)
        except SpiderError:
            raise
        except Exception as exc:
            raise SpiderError(where, f"{name}() raised {type(exc).__name__}: {exc}") from exc
        return items, links

    def _collect(
        self,
        output: Any,
        source: Request,
        where: str,
        parent: int,
        items: list[Any],
        links: list[NewRequest],
        seen: set[str],
        kept: list[Request] | None = None,
    ) -> None:
        if isinstance(output, Request):
            plain = (
                output.method == "GET"
                and output.body is None
                and output.session is None
                and not output.dont_filter
            )
            if plain and output.url in self._known:
                return  # queued already (or out of scope) in this run
            split = self._canonicalizer.split(output.url)
            error = message = None
            if split is None:
                if not urlsplit(output.url).scheme:
                    raise SpiderError(
                        where,
                        f"Request URL {output.url!r} is not absolute: use response.follow()",
                    )
                invalid = self._canonicalizer.invalid(output.url)
                if invalid is None:
                    return  # another scheme: nothing to crawl
                url, host, message = invalid
                split, error = (url, host), InvalidURL.kind  # recorded, never fetched
            origin = None if plain else f"{parent}.{len(links)}"  # (see stored.request_key)
            canonical = self._canonicalizer.key(split[0]) if error is None else split[0]
            key = canonical if plain else request_key(output, canonical, origin) or canonical
            if key in seen:
                return
            seen.add(key)
            rules = self._links
            if not rules.scope.allows(*split):
                self.dropped_offsite += 1
                if plain:
                    self._remember(output.url)
                return
            depth = rules.depth(source.depth, source.callback_name)
            if rules.too_deep(depth):
                self.dropped_depth += 1  # not remembered: a shallower page may add it
                return
            if error is None and (message := rules.traps.reason(split[0])) is not None:
                error = ErrorKind.TRAP
            links.append(
                to_stored(self._spider, output, split, depth, error, message, origin, canonical)
            )
            if kept is not None:
                output.depth = depth
                kept.append(output)
            if plain:
                self._remember(output.url)
        elif output is not None:
            if not is_item(output):
                raise SpiderError(
                    where,
                    f"callback yielded a {type(output).__name__}: yield items (dicts, "
                    "dataclasses, attrs or pydantic objects) or Requests",
                )
            items.append(output)


def _count_requests(done: list[Rendered]) -> None:
    """Count what a rendered page's requests came to, with the page."""
    for rendered in done:
        for what in ("requests", "blocked", "skipped", "failed"):
            if n := getattr(rendered, what):
                add_counter(RENDER + what, n)


def _checked(request: Request) -> Request:
    """`request` as hooks left it, its fields checked as a new Request's are (hooks set them
    directly): a ValueError or TypeError names the first bad one."""
    return Request(
        request.url,
        request.callback,
        request.priority,
        request.meta,
        method=request.method,
        headers=request.headers,
        body=request.body,
        cookies=request.cookies,
        session=request.session,
        dont_filter=request.dont_filter,
        errback=request.errback,
        allow_status=request.allow_status,
        any_content_type=request.any_content_type,
        proxy=request.proxy,
        render=request.render,
        depth=request.depth,
        fetch_backend=request.fetch_backend,
    )


#: Every error status: one page looked at outside a crawl is shown whatever its status.
_ANY_ERROR = frozenset(range(400, 600))


def _stand_in(request: Request, host: str) -> StoredRequest:
    """The store row a request outside a crawl stands for (never stored)."""
    return StoredRequest(
        0,
        request.url,
        host,
        request.callback_name,
        request.priority,
        request.depth,
        None,
        request.any_content_type,
        0,
    )


class _Slot:
    """The host slot a page's fetch took, freed once: `free()` with what the fetch says about
    the host, or, when the page ends without it (an error, a cancellation), with nothing."""

    __slots__ = ("_host", "_release", "freed")

    def __init__(self, release: Release, host: str) -> None:
        self._release = release
        self._host = host
        self.freed = False

    def free(
        self,
        health: Health | None = None,
        wait_until: float | None = None,
        why: str | None = None,
        *,
        retry: bool = False,
    ) -> None:
        if not self.freed:
            self.freed = True
            self._release(self._host, health, wait_until, why, retry=retry)

    def __enter__(self) -> _Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.free()


class Release(Protocol):
    """Frees the host slot a fetch took (Frontier.release): what the fetch says about its host,
    until when the host must wait (a Retry-After), why it failed (when it did), and whether
    it was a retry of a URL that failed before."""

    def __call__(
        self,
        host: str,
        health: Health | None,
        wait_until: float | None,
        why: str | None = None,
        retry: bool = False,
    ) -> None: ...


def health_of(exc: FetchError) -> Health | None:
    """What a failure says about its host, for the circuit breaker: a struggling server for a
    5xx (robots.txt's included), a throttling one for a 429, no answer for timeouts and
    connection errors, nothing when no request went out, and a working server for any other
    answer."""
    if isinstance(exc, RobotsUnavailable) and isinstance(exc.__cause__, FetchError):
        exc = exc.__cause__  # robots.txt could not be had: what happened to its request
    if not exc.sent:
        return None
    if isinstance(exc, HTTPStatusError):
        return _status_health(exc.status)
    if isinstance(exc, FetchTimeout | FetchConnectError):
        return Health.UNANSWERED
    return Health.OK


def _status_health(status: int) -> Health:
    """What a response's status says about its host (see health_of)."""
    if status == 429:
        return Health.THROTTLED
    return Health.ERROR if status >= 500 else Health.OK


#: Statuses that say a page is gone for good: a revisit removes its items.
_GONE = frozenset({404, 410})


def _for_host(request: Request, own: HostSettings | None) -> None:
    """`request` with its host's `host_settings`: their headers under its own (a header the
    request sets itself, in any case, wins), their `render` and `fetch_backend` where it says
    nothing."""
    if own is None:
        return
    if own.headers:
        mine = {name.lower() for name in request.headers or ()}
        added = {name: value for name, value in own.headers if name.lower() not in mine}
        request.headers = {**added, **(request.headers or {})}
    if request.render is None:
        request.render = own.render
    if request.fetch_backend is None:
        request.fetch_backend = own.fetch_backend


def _conditional(headers: dict[str, str] | None, stored: StoredRequest) -> dict[str, str] | None:
    """`headers`, with the validators a revisit sends (the page's last ETag, Last-Modified)."""
    if not stored.revisit or not (stored.etag or stored.last_modified):
        return headers
    if stored.callback == "parse_sitemap":  # read whole: its lastmods tell which pages changed
        return headers
    conditional = dict(headers or {})
    if stored.etag:
        conditional["If-None-Match"] = stored.etag
    if stored.last_modified:
        conditional["If-Modified-Since"] = stored.last_modified
    return conditional


def _disallowed(stored: StoredRequest, attempts: int) -> Outcome:
    return Outcome(
        stored,
        State.FAILED,
        attempts,
        error=ErrorKind.ROBOTS_DISALLOWED,
        message="disallowed by robots.txt",
    )


def _unchanged(stored: StoredRequest, attempts: int, fetched: Fetched, latency: float) -> Outcome:
    """A revisit answered 304: the page is unchanged, its items stay."""
    outcome = Outcome(
        stored,
        State.DONE,
        attempts,
        status=304,
        latency=latency,
        size=0,
        revisit=Revisit.UNCHANGED,
    )
    return _validated(outcome, fetched)


def _validated(outcome: Outcome, fetched: Fetched) -> Outcome:
    """`outcome` with the validators of its response, for a later revisit."""
    outcome.etag = fetched.headers.get("etag")
    outcome.last_modified = fetched.headers.get("last-modified")
    return outcome


def parses(request: Request, content_type: str | None) -> bool:
    """Whether a response of `content_type` reaches `request`'s callback: HTML, JSON when the
    request's Accept asks for it, anything with `any_content_type`."""
    if request.any_content_type or parser.is_html(content_type):
        return True
    accept = request.header("accept")
    return parser.is_json(content_type) and accept is not None and "json" in accept


def outputs_of(result: Any) -> Iterable[Any]:
    """What a callback that is not a generator returned, as outputs (one, many or none)."""
    if result is None:
        return ()
    if isinstance(result, Request) or is_item(result) or not isinstance(result, Iterable):
        return (result,)
    return result


class _RetryAsked(FetchError):
    """A process_response hook raised Retry: retried like a transient fetch error."""

    kind = ErrorKind.RETRY
    transient = True
