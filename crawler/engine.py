"""The Crawler: wires the rooms together, runs the worker pool and the store writer, owns shutdown.

    spider.start_requests ─► store ─► frontier ─► workers ─► robots ─► fetcher ─► spider callback
                               ▲                                                       │
                               └────────────── writer (batched commits) ◄── Outcome ◄──┘

Only this module reads Settings; the rooms get plain values.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import decimal
import inspect
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from . import parser
from .errors import ConfigError, CrawlerError, FetchError, HTTPStatusError, SpiderError
from .fetcher import Fetcher
from .frontier import Frontier
from .models import Request, Response
from .robots import MAX_ROBOTS_BYTES, Robots
from .settings import Settings
from .spider import Spider, check_spider_class
from .store import NewRequest, Outcome, SQLiteStore, State, StoredRequest
from .urls import Scope, split_url

log = logging.getLogger("crawler")

#: Longest wait between two retries of one URL, in seconds.
MAX_RETRY_DELAY = 60.0
#: Most page outcomes committed in one transaction.
MAX_BATCH = 512


@dataclass(slots=True)
class CrawlStats:
    """What a run did. `pages` counts pages finished in this run (done or failed)."""

    pages: int = 0
    failed: int = 0
    retried: int = 0
    items: int = 0
    dropped_offsite: int = 0
    dropped_depth: int = 0
    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0
    #: How the run ended: "complete", "already complete", "max_pages", or "stopped".
    ended: str = ""
    #: Rows left in the store when the run ended.
    queued: int = 0
    done_total: int = 0
    failed_total: int = 0
    items_total: int = 0

    @property
    def pages_per_second(self) -> float:
        return self.pages / self.elapsed if self.elapsed > 0 else 0.0


class Crawler:
    """Runs one spider against one store. `await Crawler(spider, settings).run()`.

    `store_path` defaults to `<spider name>.db` in the current directory; `fresh` discards what
    the store held. `transport` replaces the HTTP transport (tests use httpx.MockTransport).
    """

    def __init__(
        self,
        spider: Spider,
        settings: Settings | None = None,
        *,
        store_path: str | Path | None = None,
        fresh: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        check_spider_class(type(spider))
        self.spider = spider
        base = settings or Settings()
        self.settings = base.merge(type(spider).custom_settings) if settings is None else base
        self.store_path = Path(store_path or f"{spider.name}.db")
        self.fresh = fresh
        self.stats = CrawlStats()
        self._transport = transport
        self._frontier: Frontier | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._stopping = False
        self._grace_timer: asyncio.TimerHandle | None = None
        self._scope = Scope()

    # -- control ---------------------------------------------------------------------------

    def stop(self, *, force: bool = False) -> None:
        """Stop the crawl. Gracefully by default: no new pages start, pages in flight get
        `shutdown_grace` seconds to finish and be committed. `force` cancels them now; they
        stay queued for the next run. Safe to call from a signal handler, more than once."""
        self._stopping = True
        if self._frontier is not None:
            self._frontier.stop()
        if force:
            self._cancel_workers()
        elif self._grace_timer is None:
            loop = asyncio.get_running_loop()
            self._grace_timer = loop.call_later(self.settings.shutdown_grace, self._cancel_workers)

    def _cancel_workers(self) -> None:
        for task in self._workers:
            task.cancel()

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> CrawlStats:
        """Crawl until the frontier is exhausted, `max_pages` is reached, or `stop()`."""
        settings = self.settings
        stats = self.stats
        stats.started = time.monotonic()
        seeds = await self._seed_requests()
        async with contextlib.AsyncExitStack() as stack:
            store = await SQLiteStore.open(self.store_path, self.spider.name, fresh=self.fresh)
            stack.push_async_callback(store.close)
            for name in await store.callbacks_pending():
                self.spider.callback(name)  # an unknown name fails now, not mid-crawl
            await store.add(seeds)
            counts = await store.counts()
            budget = None
            if settings.max_pages:
                budget = max(settings.max_pages - counts.done - counts.failed, 0)
            if counts.pending == 0 or budget == 0:
                stats.ended = "already complete" if counts.pending == 0 else "max_pages"
                await self._final_counts(store, stats)
                return stats
            log.info(
                "%s crawl of spider %r: %d queued, %d done, %d failed (store %s)",
                "resuming" if counts.done or counts.failed else "starting",
                self.spider.name,
                counts.pending,
                counts.done,
                counts.failed,
                self.store_path,
            )
            fetcher = Fetcher(
                user_agent=settings.user_agent,
                timeout=settings.request_timeout,
                max_size=settings.max_response_size,
                max_redirects=settings.max_redirects,
                max_connections=settings.concurrency,
                transport=self._transport,
            )
            stack.push_async_callback(fetcher.aclose)
            frontier = self._frontier = Frontier(
                store,
                per_host_concurrency=settings.per_domain_concurrency,
                rate_limit=settings.rate_limit,
                batch_size=max(2 * settings.per_domain_concurrency, 16),
                max_buffered=max(8 * settings.concurrency, 256),
                page_budget=budget,
            )
            stack.push_async_callback(frontier.aclose)
            await frontier.start()
            if self._stopping:
                frontier.stop()
            robots = None
            if settings.obey_robots:
                robots = Robots(self._robots_fetcher(fetcher), settings.user_agent)
            page = _PageRunner(self, fetcher, robots)
            writer = _Writer(store, frontier, stats)
            progress = asyncio.create_task(self._report_progress(frontier))
            try:
                async with asyncio.TaskGroup() as group:
                    writer_task = group.create_task(writer.run())
                    self._workers = [
                        group.create_task(self._worker(frontier, page, writer))
                        for _ in range(settings.concurrency)
                    ]
                    await asyncio.gather(*self._workers, return_exceptions=True)
                    writer.close()
                    await writer_task
            finally:
                progress.cancel()
                if self._grace_timer is not None:
                    self._grace_timer.cancel()
                await frontier.aclose()
                released = await store.release()
                if released:
                    log.debug("returned %d leased URLs to the queue", released)
            if self._stopping:
                stats.ended = "stopped"
            elif frontier.budget_spent:
                stats.ended = "max_pages"
            else:
                stats.ended = "complete"
            await self._final_counts(store, stats)
        return stats

    async def _final_counts(self, store: SQLiteStore, stats: CrawlStats) -> None:
        counts = await store.counts()
        stats.queued = counts.pending
        stats.done_total = counts.done
        stats.failed_total = counts.failed
        stats.items_total = counts.items
        stats.elapsed = time.monotonic() - stats.started

    async def _worker(self, frontier: Frontier, page: _PageRunner, writer: _Writer) -> None:
        while (stored := await frontier.next()) is not None:
            await writer.commit(await page.run(stored))

    async def _report_progress(self, frontier: Frontier, every: float = 10.0) -> None:
        stats = self.stats
        while True:
            await asyncio.sleep(every)
            elapsed = time.monotonic() - stats.started
            log.info(
                "%d pages (%.1f/s), %d items, %d failed, %d in flight",
                stats.pages,
                stats.pages / elapsed,
                stats.items,
                stats.failed,
                frontier.in_flight,
            )

    def _robots_fetcher(self, fetcher: Fetcher) -> Any:
        async def fetch_text(url: str) -> str:
            fetched = await fetcher.fetch(url, max_size=MAX_ROBOTS_BYTES)
            return parser.decode(fetched.body, "text/plain; charset=utf-8")

        return fetch_text

    # -- requests in and out ---------------------------------------------------------------

    async def _seed_requests(self) -> list[NewRequest]:
        """The spider's start requests, validated and canonical; they also fix the scope."""
        produced = self.spider.start_requests()
        requests: list[Request] = []
        try:
            if isinstance(produced, AsyncIterator) or inspect.isasyncgen(produced):
                requests = [r async for r in produced]
            else:
                requests = list(produced)
        except CrawlerError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"spider {self.spider.name!r}: start_requests() raised {type(exc).__name__}: {exc}"
            ) from exc
        seeds: list[NewRequest] = []
        for request in requests:
            if not isinstance(request, Request):
                raise ConfigError(
                    f"spider {self.spider.name!r}: start_requests() must yield Requests, "
                    f"got {type(request).__name__}"
                )
            split = split_url(request.url)
            if split is None:
                raise ConfigError(f"start URL {request.url!r} is not an absolute http(s) URL")
            if request.callback is None and type(self.spider).parse is Spider.parse:
                raise ConfigError(
                    f"spider {self.spider.name!r}: the parse callback is not defined; write "
                    "`async def parse(self, response)` or give start requests a callback"
                )
            seeds.append(self._new_request(request, split, depth=0))
        self._scope = Scope.of(
            start_hosts=(seed.host for seed in seeds),
            allowed_domains=self.spider.allowed_domains,
        )
        return seeds

    def _new_request(self, request: Request, split: tuple[str, str], depth: int) -> NewRequest:
        if request.callback is not None and not self.spider.owns_callback(request.callback):
            raise SpiderError(
                request.url,
                f"callback {request.callback!r} is not a method of the spider "
                "(callbacks are stored by name so that a resumed crawl finds them)",
            )
        try:
            meta = json.dumps(request.meta) if request.meta else None
        except (TypeError, ValueError) as exc:
            raise SpiderError(request.url, f"Request meta is not JSON-serializable: {exc}") from exc
        return NewRequest(
            url=split[0],
            host=split[1],
            callback=request.callback_name,
            priority=request.priority,
            depth=depth,
            meta=meta,
            any_content_type=request.any_content_type,
        )

    def in_scope(self, url: str) -> bool:
        split = split_url(url)
        return split is not None and self._scope.allows(split[1])


class _PageRunner:
    """Turns one leased request into an Outcome: robots, fetch, callback. Page errors become
    outcomes (failed or retry); only bugs and cancellation escape."""

    def __init__(self, crawler: Crawler, fetcher: Fetcher, robots: Robots | None) -> None:
        self._crawler = crawler
        self._spider = crawler.spider
        self._settings = crawler.settings
        self._fetcher = fetcher
        self._robots = robots
        self._frontier = crawler._frontier
        assert self._frontier is not None

    async def run(self, stored: StoredRequest) -> Outcome:
        frontier = self._frontier
        assert frontier is not None
        attempts = stored.attempts + 1
        try:
            try:
                if self._robots is not None and not await self._robots.allowed(stored.url):
                    return Outcome(
                        stored,
                        State.FAILED,
                        attempts,
                        error="robots_disallowed",
                        message="disallowed by robots.txt",
                    )
                fetched = await self._fetcher.fetch(stored.url, allow=self._crawler.in_scope)
            finally:
                frontier.release(stored.host)
        except FetchError as exc:
            return self._failed(stored, attempts, exc)
        log.debug("%d %s", fetched.status, fetched.url)

        request = Request(
            stored.url,
            callback=self._spider.callback(stored.callback),
            priority=stored.priority,
            meta=json.loads(stored.meta) if stored.meta else {},
            any_content_type=stored.any_content_type,
            depth=stored.depth,
        )
        response = Response(
            url=fetched.url,
            status=fetched.status,
            headers=fetched.headers,
            body=fetched.body,
            request=request,
        )
        final = split_url(fetched.url) if fetched.redirects else None
        content_type = fetched.headers.get("content-type")
        if not request.any_content_type and not parser.is_html(content_type):
            return Outcome(
                stored,
                State.DONE,
                attempts,
                status=fetched.status,
                final_url=final,
                message=f"not parsed: {parser.media_type(content_type)}",
            )
        try:
            items, links = await self._callback(request, response)
        except SpiderError as exc:
            log.error("%s", exc, exc_info=exc.__cause__)
            return Outcome(
                stored,
                State.FAILED,
                attempts,
                status=fetched.status,
                error="spider",
                message=exc.message,
            )
        return Outcome(
            stored,
            State.DONE,
            attempts,
            status=fetched.status,
            items=items,
            links=links,
            final_url=final,
        )

    def _failed(self, stored: StoredRequest, attempts: int, exc: FetchError) -> Outcome:
        status = exc.status if isinstance(exc, HTTPStatusError) else None
        if exc.transient and attempts <= self._settings.max_retries:
            cap = min(MAX_RETRY_DELAY, self._settings.retry_backoff * 2 ** (attempts - 1))
            log.debug("retrying %s (%s), attempt %d", stored.url, exc.message, attempts)
            return Outcome(
                stored,
                State.QUEUED,
                attempts,
                status=status,
                error=exc.kind,
                message=exc.message,
                not_before=time.time() + random.uniform(0, cap),
            )
        log.warning("failed %s: %s", stored.url, exc.message)
        return Outcome(
            stored, State.FAILED, attempts, status=status, error=exc.kind, message=exc.message
        )

    async def _callback(
        self, request: Request, response: Response
    ) -> tuple[list[str], list[NewRequest]]:
        items: list[str] = []
        links: list[NewRequest] = []
        seen: set[str] = set()
        assert request.callback is not None
        name = request.callback_name
        try:
            result = request.callback(response)
            if inspect.isasyncgen(result):
                async for output in result:
                    self._collect(output, response, items, links, seen)
            else:
                if inspect.isawaitable(result):
                    result = await result
                for output in _iterable(result, name):
                    self._collect(output, response, items, links, seen)
        except SpiderError:
            raise
        except Exception as exc:
            raise SpiderError(
                response.url, f"callback {name}() raised {type(exc).__name__}: {exc}"
            ) from exc
        return items, links

    def _collect(
        self,
        output: Any,
        response: Response,
        items: list[str],
        links: list[NewRequest],
        seen: set[str],
    ) -> None:
        stats = self._crawler.stats
        if isinstance(output, Request):
            split = split_url(output.url)
            if split is None:
                if not urlsplit(output.url).scheme:
                    raise SpiderError(
                        response.url,
                        f"Request URL {output.url!r} is not absolute: use response.follow()",
                    )
                return  # another scheme: nothing to crawl
            if split[0] in seen:
                return
            seen.add(split[0])
            if not self._crawler._scope.allows(split[1]):
                stats.dropped_offsite += 1
                return
            depth = response.depth + 1
            if self._settings.max_depth and depth > self._settings.max_depth:
                stats.dropped_depth += 1
                return
            links.append(self._crawler._new_request(output, split, depth))
        elif output is None:
            return
        else:
            items.append(_item_json(output, response.url))


def _iterable(result: Any, name: str) -> Iterable[Any]:
    if result is None:
        return ()
    if isinstance(result, Request | dict) or not isinstance(result, Iterable):
        return (result,)
    return result


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _item_json(item: Any, url: str) -> str:
    """An item (a dict, mapping or dataclass instance) as JSON text; anything else is an error."""
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        item = dataclasses.asdict(item)
    if not isinstance(item, dict):
        raise SpiderError(
            url, f"callback yielded a {type(item).__name__}: yield dicts (items) or Requests"
        )
    try:
        return json.dumps(item, ensure_ascii=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise SpiderError(url, f"item is not JSON-serializable: {exc}") from exc


class _Writer:
    """The one task that commits page outcomes, many per transaction (group commit): while one
    batch commits, the next accumulates. A worker waits for its page's commit before it takes
    another URL, so a crash re-fetches at most `concurrency` pages; the frontier hears of an
    outcome only once it is durable, so the crawl never ends with a page's links in memory."""

    def __init__(self, store: SQLiteStore, frontier: Frontier, stats: CrawlStats) -> None:
        self._store = store
        self._frontier = frontier
        self._stats = stats
        self._queue: asyncio.Queue[tuple[Outcome, asyncio.Future[None]] | None] = asyncio.Queue()

    async def commit(self, outcome: Outcome) -> None:
        """Return once `outcome` is committed (raises what the commit raised)."""
        done = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((outcome, done))
        await done

    def close(self) -> None:
        """No more outcomes: the writer commits what it holds and ends."""
        self._queue.put_nowait(None)

    async def run(self) -> None:
        closing = False
        while not closing:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                entry = self._queue.get_nowait()
                if entry is None:
                    closing = True
                    break
                batch.append(entry)
            outcomes = [outcome for outcome, _ in batch]
            try:
                await self._store.commit(outcomes)
            except BaseException as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                        done.exception()  # the writer task reports it; waiters need not
                raise
            self._settled(outcomes)
            for _, done in batch:
                if not done.done():
                    done.set_result(None)

    def _settled(self, batch: list[Outcome]) -> None:
        stats = self._stats
        for outcome in batch:
            if outcome.state is State.QUEUED:
                stats.retried += 1
            else:
                stats.pages += 1
                stats.failed += outcome.state is State.FAILED
                stats.items += len(outcome.items)
        self._frontier.settle(batch)
