"""The writer: the one task that commits page outcomes, many per transaction (group commit),
running the pipelines on them in commit order and telling the frontier, the stats, the event
log and the sinks once they are durable."""

from __future__ import annotations

import asyncio
import json

from ..errors import ConfigError
from ..page.pipelines import Pipelines
from ..records import ErrorKind, Outcome, Revisit, State
from ..spider import Spider
from ..stats import CACHE_HITS, DROPPED, RENDER, REVISIT
from ..store import Commits
from .events import EventLog
from .frontier import Frontier
from .progress import CrawlStats
from .sinks import Delivery
from .warc import WarcArchive

#: Most page outcomes committed in one transaction.
MAX_BATCH = 512


class Writer:
    """The one task that commits page outcomes, many per transaction (group commit): while one
    batch commits, the next accumulates. A worker waits for its page's commit before it takes
    another URL, so a crash re-fetches at most `concurrency` pages; the frontier hears of an
    outcome only once it is durable, so the crawl never ends with a page's links in memory."""

    def __init__(
        self,
        store: Commits,
        frontier: Frontier,
        stats: CrawlStats,
        spider: Spider,
        pipelines: Pipelines,
        delivery: Delivery,
        events: EventLog | None = None,
        state: str | None = None,
        archive: WarcArchive | None = None,
    ) -> None:
        self._store = store
        self._frontier = frontier
        self._stats = stats
        self._spider = spider
        self._pipelines = pipelines
        self._delivery = delivery
        self._events = events
        #: The state as last committed (as restored, at first): a process that leaves it as it
        #: found it never writes it over another's.
        self._state = state
        self._queue: asyncio.Queue[tuple[Outcome, asyncio.Future[None]] | None] = asyncio.Queue()
        #: The web archive the outcomes' exchanges go to, just before they commit.
        self._archive = archive

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
            try:
                # pipelines run here, page by page in commit order, so that the state saved
                # with this commit reflects exactly the pages it commits
                outcomes = await self._redirects_kept([outcome for outcome, _ in batch])
                outcomes = [await self._pipelines.process(outcome) for outcome in outcomes]
                outcomes = await self._store.commit(
                    outcomes,
                    self._frontier.take_changed_hosts(),
                    state=self._changed_state(),
                    counters=self._spider.stats.take(),
                    marks=await self._archived(outcomes),
                )
            except BaseException as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                        done.exception()  # the writer task reports it; waiters need not
                raise
            self._settled(outcomes)
            if self._events is not None:
                self._events.committed(outcomes)
            for _, done in batch:
                if not done.done():
                    done.set_result(None)
            self._delivery.poke()

    async def _archived(self, outcomes: list[Outcome]) -> dict[str, str] | None:
        """Append the outcomes' exchanges to the web archive (in a thread: gzip and digests);
        the archive's bookmark, to commit with them."""
        archive = self._archive
        if archive is None:
            return None
        exchanges = [e for o in outcomes if o.exchanges for e in o.exchanges]
        for outcome in outcomes:
            outcome.exchanges = None  # (their bodies need not wait for the commit)
        if not exchanges:
            return None
        return {archive.key: await asyncio.to_thread(archive.write, exchanges)}

    async def _redirects_kept(self, outcomes: list[Outcome]) -> list[Outcome]:
        """The outcomes, without the items of redirects whose final URL is crawled on its own
        (the commit would drop them): the pipelines must not see them, or a dedup pipeline
        would take the page's own items, committed later, for duplicates."""
        finals = {
            o.final_key or o.final_url[0]
            for o in outcomes
            if o.final_url is not None and o.produced and o.state is not State.QUEUED
        }
        if not finals:
            return outcomes
        taken = await self._store.taken(sorted(finals))
        for outcome in outcomes:
            final = outcome.final_url
            if final is not None and (outcome.final_key or final[0]) in taken:
                outcome.produced = []
        return outcomes

    async def flush(self) -> None:
        """Commit the state and the counters changed since the last batch (the run is over)."""
        state, counters = self._changed_state(), self._spider.stats.take()
        if state is not None or counters:
            await self._store.commit([], state=state, counters=counters)
            self._delivery.poke()

    def _changed_state(self) -> str | None:
        """The spider's state as JSON text, when it changed since the last commit."""
        state = self._spider.state
        if not state and self._state is None:
            return None
        try:
            text = json.dumps(state, ensure_ascii=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"spider {self._spider.name!r}: self.state must be JSON-serializable: {exc}"
            ) from None
        if text == self._state:
            return None
        self._state = text
        return text

    def _settled(self, batch: list[Outcome]) -> None:
        stats = self._stats
        for outcome in batch:
            if outcome.state is State.QUEUED:
                stats.retried += 1
            elif outcome.error is ErrorKind.ROBOTS_DISALLOWED:
                stats.robots_disallowed += 1
            else:
                stats.pages += 1
                stats.failed += outcome.state is State.FAILED
                stats.items += len(outcome.items)
            if outcome.counters and not outcome.lost:
                stats.dropped_items += sum(
                    n for name, n in outcome.counters.items() if name.startswith(DROPPED)
                )
                stats.cached += outcome.counters.get(CACHE_HITS, 0)
                stats.rendered += outcome.counters.get(RENDER + "pages", 0)
                stats.render_blocked += outcome.counters.get(RENDER + "blocked", 0)
                stats.unchanged += outcome.counters.get(REVISIT + Revisit.UNCHANGED, 0)
                stats.changed += outcome.counters.get(REVISIT + Revisit.CHANGED, 0)
                stats.gone += outcome.counters.get(REVISIT + Revisit.GONE, 0)
        self._frontier.settle(batch)
