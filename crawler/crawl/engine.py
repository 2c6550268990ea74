"""The Crawler: wires the rooms together, runs the worker pool and the store writer, owns shutdown.

    spider.start_requests ─► store ─► frontier ─► workers ─► pages (robots, fetcher, callback)
                               ▲                                                 │
                               └──────────── writer (group commits) ◄── Outcome ◄┘

Only this module reads Settings; the rooms get plain values.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, CrawlerError, SinkFailed, SpiderError, StoreError
from ..models import Request
from ..net import tls
from ..net.cookies import Jars
from ..page.stored import to_stored
from ..records import (
    STATE_MARK,
    Ended,
    ErrorKind,
    FailedFilter,
    NewRequest,
)
from ..settings import Settings
from ..spider import Spider, check_spider_class
from ..store import Store, is_dsn, open_store
from ..urls import Scope
from .assembly import Parts
from .events import EventLog
from .export import check_output
from .progress import CrawlStats, Progress, snapshot
from .sinks import Delivery
from .warc import WarcArchive, is_warc
from .writer import Writer

if TYPE_CHECKING:  # (types only: the parts themselves are made by assembly.Parts)
    import httpx

    from ..clock import Clock
    from ..net.addresses import Resolver
    from ..net.fetcher import Fetcher
    from ..page.devtools import Requester
    from ..page.pipelines import Pipelines
    from ..page.runner import PageRunner
    from .frontier import Frontier

log = logging.getLogger("crawler")


class Crawler:
    """Runs one spider against one store. `await Crawler(spider, settings).run()`.

    `settings` defaults to `Settings()` with the spider's `custom_settings` applied; settings
    given explicitly are used as they are (layer them with `Settings.merge`). `store_path`
    defaults to `<spider name>.db` in the current directory; or `store` is a store already
    open (`crawler.store.open_store(location, spider name)`), which the run uses and leaves open
    (its caller closes it; several runs may share it). `fresh` discards what the store
    held; `retry_failed` puts the URLs that failed back in the queue first (a FailedFilter:
    only those of some error kinds or hosts); `revisit`
    (seconds) queues again the pages done longer ago than that, fetched conditionally (a 304
    keeps a page's items, a new page replaces them, a 404/410 removes them). `output` receives
    the items: a .jsonl, .json or .csv file kept in step with the commits (exactly once, across
    crashes and resumes), like every other sink; `overwrite_output` starts it over with the
    store's first item. `transport` replaces
    the HTTP transport (tests use httpx.MockTransport) and `resolver` the DNS lookups of the
    address guard (tests map names to addresses with it). `clock` is the time politeness
    runs on (tests pass a fast one, so that long cooldowns and outages pass quickly). `events`
    appends a JSON-lines event log to that file (see events.py). `progress()` tells where a
    running crawl is.
    """

    def __init__(
        self,
        spider: Spider,
        settings: Settings | None = None,
        *,
        store_path: str | Path | None = None,
        store: Store | None = None,
        fresh: bool = False,
        retry_failed: bool | FailedFilter = False,
        revisit: float | None = None,
        output: str | Path | None = None,
        overwrite_output: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver | None = None,
        events: str | Path | None = None,
        clock: Clock | None = None,
    ) -> None:
        check_spider_class(type(spider))
        self.spider = spider
        base = settings or Settings()
        self.settings = base.merge(type(spider).custom_settings) if settings is None else base
        if store is not None and (store_path is not None or fresh):
            raise ConfigError(
                "Crawler: a store already open takes neither store_path nor fresh (open it fresh)"
            )
        self._given_store = store
        location = store.location if store is not None else store_path or f"{spider.name}.db"
        #: A SQLite file, or a PostgreSQL DSN (postgresql://...) for a shared store.
        self.store_path: str | Path = str(location) if is_dsn(location) else Path(location)
        self.fresh = fresh
        self.retry_failed = retry_failed
        #: Seconds: pages done longer ago are fetched again, conditionally (run --revisit).
        self.revisit = revisit
        if output is not None and is_warc(output):  # -o crawl.warc.gz: the web archive
            if overwrite_output:
                raise ConfigError(
                    f"-O {output}: a web archive cannot be written again from the store (its "
                    "responses are not kept there): start the crawl over with --fresh"
                )
            self.settings = self.settings.merge({"warc_file": str(output)})
            output = None
        self.output = check_output(output) if output is not None else None
        self.overwrite_output = overwrite_output
        self.stats = CrawlStats()
        self._parts = Parts(
            spider,
            self.settings,
            output=self.output,
            overwrite_output=overwrite_output,
            transport=transport,
            resolver=resolver,
            clock=clock,
        )
        self.events = Path(events) if events is not None else None
        self._frontier: Frontier | None = None
        self._store: Store | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._stopping = False
        self._grace_timer: asyncio.TimerHandle | None = None
        self._scope = Scope()
        self._canonicalizer = self._parts.canonicalizer

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

    async def progress(self) -> Progress | None:
        """Where the crawl is now, host by host (busiest first); None when it is not
        running. Cheap enough to call every second."""
        store, frontier = self._store, self._frontier
        if store is None or frontier is None:
            return None
        pool = self._parts.proxy_pool
        return await snapshot(
            store,
            frontier,
            self.stats,
            max_pages=self.settings.max_pages or None,
            proxies=pool.status() if pool else [],
        )

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> CrawlStats:
        """Crawl until the frontier is exhausted, `max_pages` is reached, or `stop()`."""
        stats = self.stats
        stats.started = time.monotonic()
        pipelines, hooks, sinks = self._parts.extensions()
        seeds = await self._seed_requests()
        async with contextlib.AsyncExitStack() as stack:
            store = self._given_store
            if store is None:
                store = await self._open_store()
                stack.push_async_callback(store.close)
            saved_state = await self._restore_state(store)
            budget = await self._queue_seeds(store, seeds)
            delivery = Delivery(store, sinks, self.spider)
            await delivery.open()
            if stats.ended:  # nothing to do
                await self._deliver(delivery, store, stats)
                await self._final_counts(store, stats)
                return stats
            delivery.start()
            stack.callback(delivery.cancel)
            archive = await self._archive(store)
            fetcher = await self._make_fetcher(store, seeds)
            stats.dns = fetcher.dns_stats
            stack.push_async_callback(fetcher.aclose)
            frontier = self._frontier = self._parts.frontier(store, budget)
            stack.push_async_callback(frontier.aclose)
            await frontier.start()
            if self._stopping:
                frontier.stop()
            renderer = self._parts.renderer(
                fetcher, self._parts.allows(self._scope), self._parts.charge(frontier)
            )
            stack.push_async_callback(renderer.aclose)
            duplicates = await self._parts.duplicates(store)
            page = self._parts.crawl_page_runner(
                store,
                fetcher,
                frontier,
                hooks,
                renderer,
                self._scope,
                duplicates,
                archive is not None,
            )
            # links back to a start URL (a site's home page, from every page) are not sent on
            # to the store, which would only find them queued and look for their host's rows
            page.remember_queued(seeds)
            events = EventLog(self.events) if self.events is not None else None
            if events is not None:
                stack.callback(events.close)
                events.emit("start", spider=self.spider.name, store=str(self.store_path))
            writer = Writer(
                store,
                frontier,
                stats,
                self.spider,
                pipelines,
                delivery,
                events,
                saved_state,
                archive,
            )
            ended: Ended | str = Ended.ERROR
            try:
                await pipelines.open()
                await self._lifecycle("opened")
                await self._crawl(store, frontier, page, writer)
                self._finish(frontier, page)
                ended = stats.ended
            finally:
                await self._close(store, pipelines, writer, ended)
            await self._deliver(delivery, store, stats)
            for sink in sinks:
                if delivery.written.get(sink.key):
                    log.info("%s: %d items delivered", sink.key, delivery.written[sink.key])
            await self._final_counts(store, stats)
            if events is not None:
                events.emit("end", **dataclasses.asdict(stats))
        return stats

    async def _archive(self, store: Store) -> WarcArchive | None:
        """The crawl's web archive (settings.warc_file), cut back to where the last commit left
        it; None when it keeps none."""
        settings = self.settings
        if not settings.warc_file:
            return None
        archive = WarcArchive(
            settings.warc_file, max_size=settings.warc_max_size, spider=self.spider.name
        )
        if not await store.claim(archive.key):
            raise ConfigError(
                f"{settings.warc_file}: another process of this crawl writes it (one process "
                "writes a web archive)"
            )
        mark = await store.get_mark(archive.key)
        await asyncio.to_thread(archive.resume, mark)
        if mark is None:  # from now on, a crash leaves the archive to cut back, never to guess
            await store.move_mark(archive.key, None, archive.mark())
        return archive

    async def _deliver(self, delivery: Delivery, store: Store, stats: CrawlStats) -> None:
        """The sinks' last delivery. One that fails ends the run with SinkFailed, the run's
        counts taken first (`self.stats`), so that the caller can still say what it did."""
        try:
            await delivery.finish()
        except SinkFailed:
            await self._final_counts(store, stats)
            raise

    async def _restore_state(self, store: Store) -> str | None:
        """Give the spider the state the last commit kept; returns its text."""
        text = await store.get_mark(STATE_MARK)
        if text is None:
            return None
        try:
            state = json.loads(text)
        except ValueError:
            state = None
        if not isinstance(state, dict):
            raise StoreError(f"store {store.location}: the spider's saved state is not a dict")
        self.spider.state = state
        return text

    async def _lifecycle(self, name: str, *args: str) -> None:
        """Run the spider's `opened()` or `closed(reason)`; an error in it is a SpiderError."""
        try:
            await getattr(self.spider, name)(*args)
        except Exception as exc:
            raise SpiderError(
                self.spider.name, f"{name}() raised {type(exc).__name__}: {exc}"
            ) from exc

    async def _close(
        self, store: Store, pipelines: Pipelines, writer: Writer, ended: Ended | str
    ) -> None:
        """The end of a run, however it ended: the spider's `closed(reason)`, the pipelines'
        `close`, then the state and counters they left, committed. When the run failed, errors
        here are logged (the run's own error is the one raised)."""
        failing = ended == Ended.ERROR
        steps: list[Callable[[], Awaitable[None]]] = [
            functools.partial(self._lifecycle, "closed", ended),
            pipelines.close,
            writer.flush,
        ]
        for step in steps:
            try:
                await step()
            except Exception as exc:
                if not failing:
                    raise
                log.error("while closing: %s", exc)

    async def _queue_seeds(self, store: Store, seeds: list[NewRequest]) -> int | None:
        """Queue the failed URLs again (--retry-failed) and the start requests; check that the
        spider still has every callback the queue names. Returns this process's page budget
        (None: no max_pages); sets `stats.ended` when there is nothing left to do."""
        settings, stats = self.settings, self.stats
        if self.retry_failed:
            wanted = self.retry_failed if isinstance(self.retry_failed, FailedFilter) else None
            again = 0
            for host, error in wanted.pairs() if wanted else [(None, None)]:
                again += await store.requeue_failed(host, error)
            log.info("queued %d failed URLs again", again)
        if self.revisit is not None:
            again = await store.requeue_stale(time.time() - self.revisit)
            log.info("revisiting %d pages done more than %g s ago", again, self.revisit)
        for name in await store.callbacks_pending(known=self.spider.has_callback):
            self.spider.callback(name)  # an unknown name fails now, not mid-crawl
        await store.add(seeds)
        counts = await store.counts()
        if not seeds and counts.pending + counts.done + counts.failed == 0:
            raise ConfigError(
                f"spider {self.spider.name!r} has no start URLs: set start_urls, or pass "
                "-a start_urls=URL[,URL...]"
            )
        budget = None
        if settings.max_pages:
            # a shared store grants pages as they are fetched, against every process's
            budget = 0 if store.shared else max(settings.max_pages - counts.fetched, 0)
            if counts.fetched >= settings.max_pages:
                stats.ended = Ended.MAX_PAGES
        if counts.pending == 0:
            stats.ended = Ended.ALREADY_COMPLETE
        if not stats.ended:
            log.info(
                "%s crawl of spider %r: %d queued, %d done, %d failed (store %s)",
                "resuming" if counts.done or counts.failed else "starting",
                self.spider.name,
                counts.pending,
                counts.done,
                counts.failed,
                store.location,
            )
        return budget

    async def _make_fetcher(self, store: Store, seeds: list[NewRequest]) -> Fetcher:
        return self._parts.fetcher(self._parts.trusted_hosts(seeds), await self._jars(store))

    def requester(
        self, urls: Iterable[str] = ()
    ) -> contextlib.AbstractAsyncContextManager[Requester]:
        """One request at a time through this crawl's fetcher, robots.txt, address guard,
        hooks and page runner, with no store (the `fetch`, `parse` and `shell` commands,
        testing.Replay). `urls` stand for the start URLs: their hosts are trusted (they may be
        private addresses) and set the scope."""
        return self._parts.requester(urls)

    async def _crawl(
        self, store: Store, frontier: Frontier, page: PageRunner, writer: Writer
    ) -> None:
        """Run the worker pool and the writer until the frontier is done or the crawl stops;
        leased URLs not fetched go back to the queue."""
        self._store = store
        try:
            async with asyncio.TaskGroup() as group:
                writer_task = group.create_task(writer.run())
                self._workers = [
                    group.create_task(self._worker(frontier, page, writer))
                    for _ in range(self.settings.concurrency)
                ]
                await asyncio.gather(*self._workers, return_exceptions=True)
                writer.close()
                await writer_task
        except BaseExceptionGroup as group:
            # One failure (say, the store's disk is full) surfaces in the writer and in
            # every worker waiting on it: report it once, as itself.
            raise _first_error(group) from None
        finally:
            self._store = None
            if self._grace_timer is not None:
                self._grace_timer.cancel()
            await frontier.aclose()
            released = await store.release()
            if released:
                log.debug("returned %d leased URLs to the queue", released)

    def _finish(self, frontier: Frontier, page: PageRunner) -> None:
        """How the run ended, and what this run dropped."""
        stats = self.stats
        if self._stopping:
            stats.ended = Ended.STOPPED
        elif frontier.budget_spent:
            stats.ended = Ended.MAX_PAGES
        else:
            stats.ended = Ended.COMPLETE
        stats.dropped_offsite, stats.dropped_depth = page.dropped_offsite, page.dropped_depth
        stats.dropped_nofollow = page.dropped_nofollow + page.dropped_noindex
        stats.pages += frontier.abandoned_pages
        stats.failed += frontier.abandoned_pages
        stats.hosts_in_memory = frontier.hosts_peak
        stats.hosts_evicted = frontier.hosts_evicted

    async def _open_store(self) -> Store:
        return await open_store(
            self.store_path, self.spider.name, fresh=self.fresh, lease_ttl=self.settings.lease_ttl
        )

    async def _jars(self, store: Store) -> Jars:
        """The cookie jars as the last committed page left them."""
        try:
            return Jars(await store.jars())
        except ValueError as exc:
            raise StoreError(f"store {store.location}: a session's cookies: {exc}") from None

    async def _final_counts(self, store: Store, stats: CrawlStats) -> None:
        counts = await store.counts()
        skipped = 0
        if counts.failed:  # robots.txt's skips are in the failures ledger, but not failures
            async for _ in store.failures(error=ErrorKind.ROBOTS_DISALLOWED):
                skipped += 1
        stats.queued = counts.pending
        stats.done_total = counts.done
        stats.failed_total = counts.failed - skipped
        stats.robots_disallowed_total = skipped
        stats.items_total = counts.items
        stats.elapsed = time.monotonic() - stats.started

    async def _worker(self, frontier: Frontier, page: PageRunner, writer: Writer) -> None:
        while (stored := await frontier.next()) is not None:
            await writer.commit(await page.run(stored))

    # -- requests in and out ---------------------------------------------------------------

    async def _seed_requests(self) -> list[NewRequest]:
        """The spider's start requests, validated and canonical; they also fix the scope."""
        if type(self.spider).start_requests is not Spider.start_requests:
            await tls.verify_paths_loaded()  # spider code may use aiohttp's SSL contexts
        requests: list[Request] = []
        try:
            produced = self.spider.start_requests()
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
            split = self._canonicalizer.split(request.url)
            if split is None:
                invalid = self._canonicalizer.invalid(request.url)
                why = f": {invalid[2]}" if invalid else " is not an absolute http(s) URL"
                raise ConfigError(f"start URL {request.url!r}{why}")
            if request.callback is None and type(self.spider).parse is Spider.parse:
                raise ConfigError(
                    f"spider {self.spider.name!r}: the parse callback is not defined; write "
                    "`async def parse(self, response)` or give start requests a callback"
                )
            try:
                seeds.append(
                    to_stored(
                        self.spider,
                        request,
                        split,
                        0,
                        origin=f"start.{len(seeds)}",
                        canonical=self._canonicalizer.key(split[0]),
                    )
                )
            except SpiderError as exc:
                raise ConfigError(
                    f"spider {self.spider.name!r}: start request: {exc.message}"
                ) from None
        self._scope = self._parts.spider_scope(seed.host for seed in seeds)
        return seeds


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first exception in a (nested) group that is not a cancellation."""
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            return _first_error(error)
        if not isinstance(error, asyncio.CancelledError):
            return error
    return group.exceptions[0]
