"""What a crawl reports about itself: the counts of a run (CrawlStats), and a running crawl at
one moment (Progress, a HostProgress per host). Plain records; the engine fills them."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..net.dns import DnsStats
from ..net.politeness import Circuit, HostHealth, Wait
from ..net.proxies import ProxyStatus
from ..records import Ended, WorkerInfo
from ..stats import split as split_counters

if TYPE_CHECKING:
    from ..store import Reader
    from .frontier import Frontier


@dataclass(slots=True)
class CrawlStats:
    """What a run did. `pages` counts pages finished in this run (done or failed)."""

    pages: int = 0
    failed: int = 0
    retried: int = 0
    items: int = 0
    dropped_offsite: int = 0
    dropped_depth: int = 0
    #: Links of nofollow pages and items of noindex pages left out.
    dropped_nofollow: int = 0
    #: Items the pipelines dropped in this run.
    dropped_items: int = 0
    #: Pages the HTTP cache answered in this run.
    cached: int = 0
    #: Pages rendered in the browser in this run, and the requests of theirs that were refused.
    rendered: int = 0
    render_blocked: int = 0
    #: Revisits of this run: pages found unchanged (304), changed, and gone (404/410).
    unchanged: int = 0
    changed: int = 0
    gone: int = 0
    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0
    #: How the run ended (empty while it runs).
    ended: Ended | str = ""
    #: Rows left in the store when the run ended.
    queued: int = 0
    done_total: int = 0
    failed_total: int = 0
    items_total: int = 0
    #: URLs robots.txt disallowed: skipped, apart from `pages` and failures (this run; store).
    robots_disallowed: int = 0
    robots_disallowed_total: int = 0
    #: This run's name lookups (sent, answered from the cache, failed, their seconds).
    dns: DnsStats = field(default_factory=DnsStats)
    #: Hosts whose politeness state was held in memory at most at once, and hosts evicted
    #: (see the `max_hosts_in_memory` setting).
    hosts_in_memory: int = 0
    hosts_evicted: int = 0

    @property
    def pages_per_second(self) -> float:
        return self.pages / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True, slots=True)
class HostProgress:
    """One host while the crawl runs: requests in flight, rows waiting (queued, or leased and
    buffered), pages done and failed (earlier runs included), seconds between request starts,
    seconds until its next request may start, and its circuit breaker's state."""

    host: str
    in_flight: int
    queued: int
    done: int
    failed: int
    delay: float
    wait: float
    circuit: Circuit
    #: What holds its next request back for `wait` seconds (None: nothing).
    waiting_for: Wait | None = None
    #: Its health (ok, slowed, open, given up) and why (see politeness.host_health).
    health: HostHealth = HostHealth.OK
    why: str = ""


@dataclass(frozen=True, slots=True)
class Progress:
    """A running crawl at one moment (see `Crawler.progress`). `run` holds this run's counts
    (pages, failed, retried, items); the totals are the store's, earlier runs included
    (`fetched`: pages a request went out for, what `max_pages` counts)."""

    elapsed: float
    run: CrawlStats
    queued: int
    done: int
    failed: int
    items: int
    fetched: int
    in_flight: int
    max_pages: int | None
    hosts: list[HostProgress]
    #: The processes of the crawl, on a shared store (none otherwise).
    workers: list[WorkerInfo] = field(default_factory=list)
    #: The spider's own counters and the items its pipelines dropped, by reason (committed).
    stats: dict[str, int] = field(default_factory=dict)
    dropped_items: dict[str, int] = field(default_factory=dict)
    #: The crawl's proxies (`proxies` setting): requests, failures, rest (none without).
    proxies: list[ProxyStatus] = field(default_factory=list)


async def snapshot(
    store: Reader,
    frontier: Frontier,
    stats: CrawlStats,
    *,
    max_pages: int | None,
    proxies: list[ProxyStatus],
) -> Progress:
    """Where a running crawl is now, host by host (busiest first)."""
    totals = await store.host_totals()
    status = frontier.host_status()
    hosts = []
    for host, counts in totals.items():
        now = status.get(host)
        in_flight = now.in_flight if now else 0
        hosts.append(
            HostProgress(
                host,
                in_flight,
                counts.pending - in_flight,
                counts.done,
                counts.failed,
                now.delay if now else 0.0,
                now.wait if now else 0.0,
                now.circuit if now else Circuit.CLOSED,
                now.waiting_for if now else None,
                now.health if now else HostHealth.OK,
                now.why if now else "",
            )
        )
    hosts.sort(key=lambda h: (-h.in_flight, -(h.queued > 0), -(h.done + h.failed), h.host))
    own, dropped = split_counters(await store.counters())
    return Progress(
        elapsed=time.monotonic() - stats.started,
        run=dataclasses.replace(
            stats,
            dns=dataclasses.replace(stats.dns),
            hosts_in_memory=frontier.hosts_peak,
            hosts_evicted=frontier.hosts_evicted,
        ),
        queued=sum(h.queued for h in hosts),
        done=sum(h.done for h in hosts),
        failed=sum(h.failed for h in hosts),
        items=sum(c.items for c in totals.values()),
        fetched=sum(c.fetched for c in totals.values()),
        in_flight=frontier.in_flight,
        max_pages=max_pages,
        hosts=hosts,
        workers=await store.workers(),
        stats=own,
        dropped_items=dropped,
        proxies=proxies,
    )
