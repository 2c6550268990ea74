import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crawler.crawl.frontier import Frontier
from crawler.net.politeness import Circuit, Health, Wait
from crawler.store import NewRequest, Outcome, SQLiteStore, State, StoredRequest
from crawler.urls import registrable_domain
from tests.helpers import ManualClock


def req(host: str, n: int) -> NewRequest:
    return NewRequest(url=f"http://{host}/{n}", host=host)


@pytest.fixture
async def store(store_path: Path) -> AsyncIterator[SQLiteStore]:
    async with await SQLiteStore.open(store_path, "s") as opened:
        yield opened


async def started(store: SQLiteStore, **kwargs: object) -> Frontier:
    options: dict[str, object] = {"per_host_concurrency": 2, "rate_limit": 0.0, **kwargs}
    frontier = Frontier(store, **options)  # type: ignore[arg-type]
    await frontier.start()
    return frontier


async def done(
    frontier: Frontier, store: SQLiteStore, request: StoredRequest, **kw: object
) -> None:
    outcome = Outcome(request, State.DONE, 1, **{"latency": 0.01, **kw})  # type: ignore[arg-type]
    frontier.release(request.host)
    await store.commit([outcome])
    frontier.settle([outcome])


async def test_per_host_concurrency_and_finish(store: SQLiteStore) -> None:
    await store.add([req("a.com", n) for n in range(3)])
    frontier = await started(store)
    first, second = await frontier.next(), await frontier.next()
    assert first is not None
    assert second is not None
    assert frontier.host_in_flight("a.com") == 2
    third = asyncio.create_task(frontier.next())
    await asyncio.sleep(0.01)
    assert not third.done()  # the host is full: the frontier waits, it is not finished
    await done(frontier, store, first)
    got = await third
    assert got is not None
    assert got.url == "http://a.com/2"
    await done(frontier, store, second)
    last = asyncio.create_task(frontier.next())
    await asyncio.sleep(0.01)
    assert not last.done()  # one page still in flight may add links
    await done(frontier, store, got)
    assert await last is None


async def test_a_throttled_host_does_not_block_others(store: SQLiteStore) -> None:
    await store.add([req("slow.com", n) for n in range(3)] + [req("fast.com", n) for n in range(5)])
    frontier = await started(store, rate_limit=0.001)  # one request per 1000 s per host
    hosts = [(await frontier.next()) for _ in range(2)]
    assert {r.host for r in hosts if r} == {"slow.com", "fast.com"}
    # both hosts are now waiting for a token; nothing else may start for ~1000 s
    waiting = asyncio.create_task(frontier.next())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    waiting.cancel()


async def test_links_committed_later_are_found(store: SQLiteStore) -> None:
    await store.add([req("a.com", 0)])
    frontier = await started(store)
    first = await frontier.next()
    assert first is not None
    await done(frontier, store, first, links=[req("b.com", 1), req("a.com", 1)])
    urls = {(await frontier.next()).url, (await frontier.next()).url}  # type: ignore[union-attr]
    assert urls == {"http://b.com/1", "http://a.com/1"}


async def test_retry_waits_for_its_not_before_time(store: SQLiteStore) -> None:
    clock = ManualClock(100.0)
    await store.add([req("a.com", 0)])
    frontier = await started(store, clock=clock)
    first = await frontier.next()
    assert first is not None
    retry = Outcome(first, State.QUEUED, 1, not_before=100.05)
    frontier.release("a.com")
    await store.commit([retry])
    frontier.settle([retry])
    status = frontier.host_status()["a.com"]
    assert (status.waiting_for, status.wait) == (Wait.RETRY, pytest.approx(0.05))
    pending = asyncio.create_task(frontier.next())
    await asyncio.sleep(0.01)
    assert not pending.done()
    clock.t = 100.06  # the frontier's next timed wake-up sees the new time
    again = await asyncio.wait_for(pending, 5)
    assert again is not None
    assert again.attempts == 1


async def test_page_budget_and_stop(store: SQLiteStore) -> None:
    await store.add([req("a.com", n) for n in range(10)])
    frontier = await started(store, per_host_concurrency=10, page_budget=3)
    taken = [await frontier.next() for _ in range(3)]
    assert all(taken)
    assert frontier.budget_spent
    for request in taken:
        assert request is not None
        await done(frontier, store, request)
    assert await frontier.next() is None

    frontier = await started(store)
    frontier.stop()
    assert await frontier.next() is None
    await frontier.aclose()


async def test_retry_after_holds_the_whole_host_but_not_others(store: SQLiteStore) -> None:
    clock = ManualClock(1000.0)
    await store.add([req("a.com", n) for n in range(3)] + [req("b.com", 0)])
    frontier = await started(store, clock=clock)
    first = await frontier.next()
    assert first is not None
    frontier.release(first.host, None, 1000.0 + 3600)  # a 429 with Retry-After: 3600
    other = await frontier.next()
    assert other is not None
    assert other.host != first.host
    waiting = asyncio.create_task(frontier.next())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # the throttled host's other URLs wait
    waiting.cancel()
    held = frontier.host_status()[first.host]
    assert (held.waiting_for, held.wait) == (Wait.RETRY_AFTER, 3600)


async def test_a_host_given_up_on_has_its_urls_failed(store: SQLiteStore) -> None:
    from crawler.net.politeness import Breaker

    await store.add([req("dead.com", n) for n in range(5)])
    frontier = await started(
        store,
        breaker=lambda: Breaker(threshold=1, cooldown=0.0, give_up_requests=1, give_up_after=0),
    )
    first = await frontier.next()
    assert first is not None
    frontier.release(first.host, Health.UNANSWERED, None, "refused")  # and no patience
    assert frontier.host_state("dead.com") is Circuit.GIVEN_UP
    outcome = Outcome(first, State.FAILED, 1, error="connect")
    await store.commit([outcome])
    frontier.settle([outcome])
    assert await frontier.next() is None  # finished: nothing left to fetch
    counts = await store.counts()
    assert (counts.failed, counts.queued, counts.leased) == (5, 0, 0)
    assert frontier.abandoned_pages == 4
    await store.add([req("dead.com", 9)])  # a link to it found later fails too
    frontier.notify("dead.com", 0.0)
    assert await frontier.next() is None
    failed = [f async for f in store.failures(error="host_unavailable")]
    assert len(failed) == 5  # each with the reason
    assert failed[0]["message"] == (
        "host dead.com given up: none of its last 1 requests succeeded, none for 0 s "
        "(last: refused)"
    )


async def test_host_politeness_state_survives_a_restart(
    store: SQLiteStore, store_path: Path
) -> None:
    from crawler.net.politeness import Breaker

    clock = ManualClock(1000.0)
    await store.add(
        [req("slow.com", n) for n in range(2)]
        + [req("dead.com", n) for n in range(3)]
        + [req("ok.com", 0)]
    )
    frontier = await started(
        store,
        clock=clock,
        per_host_concurrency=1,
        breaker=lambda: Breaker(threshold=1, cooldown=60),
    )
    taken = {r.host: r for r in [await frontier.next() for _ in range(3)] if r}
    assert set(taken) == {"slow.com", "dead.com", "ok.com"}
    frontier.release("slow.com", None, 1000.0 + 3600)  # Retry-After: one hour
    frontier.release("dead.com", Health.UNANSWERED, None)  # the circuit opens
    frontier.release("ok.com", Health.OK, None)
    changed = frontier.take_changed_hosts()
    assert {h.host for h in changed} == {"slow.com", "dead.com"}
    outcomes = [Outcome(r, State.QUEUED, 1, not_before=0.0) for r in taken.values()]
    await store.commit(outcomes, changed)
    await frontier.aclose()
    await store.release()

    # a new run: the hour-long wait and the open circuit are still there
    restarted = await started(
        store,
        clock=clock,
        breaker=lambda: Breaker(threshold=1, cooldown=60),
    )
    first = await restarted.next()
    assert first is not None
    assert first.host == "ok.com"
    waiting = asyncio.create_task(restarted.next())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    waiting.cancel()
    states = {h.host: h for h in await store.host_states()}
    assert states["slow.com"].not_before == 4600.0
    assert states["dead.com"].opens == 1
    assert states["dead.com"].open_until == 1060.0
    assert states["dead.com"].silent_since == 1000.0  # its outage goes on being measured

    # --retry-failed forgets host states along with the failures
    await store.requeue_failed()
    assert await store.host_states() == []


async def test_a_host_given_up_on_stays_given_up_after_a_restart(store: SQLiteStore) -> None:
    from crawler.store import HostState

    await store.add([req("dead.com", n) for n in range(3)])
    await store.commit([], [HostState("dead.com", opens=3, open_until=float("inf"))])
    frontier = await started(store)
    assert await frontier.next() is None  # its URLs were failed, not fetched
    assert (await store.counts()).failed == 3


async def test_a_refill_landing_after_the_host_budget_ran_out_gives_its_rows_back(
    store: SQLiteStore,
) -> None:
    """The race that once hung a crawl: a refill under way while the host's budget runs out."""
    await store.add([req("a.com", n) for n in range(8)])
    gate = asyncio.Event()
    real_lease = store.lease
    leases = 0

    async def slow_lease(host: str, limit: int, now: float) -> list[StoredRequest]:
        nonlocal leases
        leases += 1
        if leases > 1:
            await gate.wait()  # the second refill is held until the budget is spent
        return await real_lease(host, limit, now)

    store.lease = slow_lease  # type: ignore[method-assign]
    frontier = await started(store, per_host_concurrency=4, batch_size=2, host_budget=2)
    first, second = await frontier.next(), await frontier.next()
    assert first is not None
    assert second is not None
    await asyncio.sleep(0)  # the second refill has started and waits on the gate
    for request in (first, second):
        await done(frontier, store, request)  # the budget is spent: the host is exhausted
    gate.set()
    assert await asyncio.wait_for(frontier.next(), 5) is None  # finished, not stuck
    await frontier.aclose()
    counts = await store.counts()
    assert (counts.done, counts.leased, counts.queued) == (2, 0, 6)


async def test_the_probes_of_an_open_circuit_take_turns_between_fresh_urls_and_retries(
    store: SQLiteStore,
) -> None:
    from crawler.net.politeness import Breaker

    clock = ManualClock(1000.0)
    await store.add([req("a.com", 0)])
    frontier = await started(
        store,
        clock=clock,
        per_host_concurrency=1,
        breaker=lambda: Breaker(threshold=1, cooldown=10),
    )
    first = await frontier.next()
    assert first is not None
    frontier.release("a.com", Health.ERROR, None)  # a 503: the circuit opens
    retry = Outcome(first, State.QUEUED, 1, not_before=0.0)  # due at once, first in line
    await store.commit([retry], frontier.take_changed_hosts())
    frontier.settle([retry])
    await store.add([req("a.com", 1)])  # a page found meanwhile, never tried
    frontier.notify("a.com", 0.0)
    clock.t = 1010.0
    probe = await asyncio.wait_for(frontier.next(), 5)
    assert probe is not None
    assert (probe.url, probe.attempts) == ("http://a.com/0", 1)  # first, the page that failed
    frontier.release("a.com", Health.ERROR, None, retry=True)  # failed again: open longer
    clock.t = 1030.0
    second = await asyncio.wait_for(frontier.next(), 5)
    assert second is not None
    assert (second.url, second.attempts) == ("http://a.com/1", 0)  # then one never tried


async def test_requests_a_rendered_page_made_take_its_hosts_tokens(store: SQLiteStore) -> None:
    clock = ManualClock(100.0)
    await store.add([req("a.com", n) for n in range(2)])
    frontier = await started(store, clock=clock, rate_limit=100.0)  # a token every 0.01 s
    first = await frontier.next()
    assert first is not None
    frontier.charge("a.com")  # the page's script and its XHR went to a.com too
    frontier.charge("a.com")
    frontier.charge("cdn.example")  # a host the crawl has no pages of: not paced
    await done(frontier, store, first)
    pending = asyncio.create_task(frontier.next())
    clock.t = 100.02  # without the two charges, the next page could start at 100.01
    await asyncio.sleep(0.05)
    assert not pending.done()
    clock.t = 100.031
    again = await asyncio.wait_for(pending, 5)
    assert again is not None


async def test_a_broad_crawl_finishes_the_hosts_it_works_on_before_starting_others(
    store: SQLiteStore,
) -> None:
    # Mercator's back queues: with max_active_hosts, a host's pages come while its connection
    # is warm, instead of every host in turn (each host then waits for all the others)
    hosts = ["a.com", "b.com", "c.com", "d.com"]

    async def order(**options: object) -> list[str]:
        await store.add([req(host, n) for host in hosts for n in range(3)])
        frontier = await started(store, per_host_concurrency=1, **options)
        seen = []
        while (request := await frontier.next()) is not None:
            seen.append(request.host)
            await done(frontier, store, request)
        await frontier.aclose()
        return seen

    narrow = await order(max_active_hosts=2)
    assert set(narrow[:6]) == {"a.com", "b.com"}
    assert set(narrow[6:]) == {"c.com", "d.com"}
    await store.requeue_stale(float("inf"))  # the same pages again, every host at once
    assert {"c.com", "d.com"} & set((await order())[:6])  # without the limit: hosts in turn


async def test_an_idle_worker_starts_another_host_beyond_the_limit(store: SQLiteStore) -> None:
    # the limit holds only while the hosts worked on keep the workers busy: a host that must
    # wait for its rate limit lets another one start
    await store.add([req(host, n) for host in ("a.com", "b.com", "c.com") for n in range(2)])
    frontier = await started(store, rate_limit=0.001, max_active_hosts=1)
    first = await frontier.next()
    assert first is not None
    await done(frontier, store, first)
    second, third = await frontier.next(), await frontier.next()
    assert {first.host, second.host, third.host} == {"a.com", "b.com", "c.com"}  # type: ignore[union-attr]
    await frontier.aclose()


async def test_hosts_of_one_politeness_key_share_its_concurrency(store: SQLiteStore) -> None:
    await store.add([req(f"{name}.shop.test", n) for name in "abc" for n in range(3)])
    await store.add([req("other.test", n) for n in range(3)])
    frontier = await started(store, per_host_concurrency=2, key_of=registrable_domain)
    handed = [await frontier.next() for _ in range(4)]
    hosts = [r.host for r in handed if r]
    # two of shop.test's three hosts' pages at once, two of other.test's
    assert sum(h.endswith(".shop.test") for h in hosts) == 2
    assert hosts.count("other.test") == 2
    waiting = asyncio.create_task(frontier.next())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # both keys are full
    first_shop = next(r for r in handed if r and r.host.endswith(".shop.test"))
    await done(frontier, store, first_shop)
    assert (await waiting).host.endswith(".shop.test")  # type: ignore[union-attr]


async def test_a_host_whose_key_is_still_resolving_waits_for_it(store: SQLiteStore) -> None:
    await store.add([req("a.test", 0), req("b.test", 0)])
    known = asyncio.Event()

    async def address(host: str) -> str:
        await known.wait()
        return "192.0.2.1"

    frontier = await started(store, per_host_concurrency=1, key_of=address)
    first = asyncio.create_task(frontier.next())
    await asyncio.sleep(0.01)
    assert not first.done()
    known.set()
    got = await first
    assert got is not None
    second = asyncio.create_task(frontier.next())
    await asyncio.sleep(0.01)
    assert not second.done()  # one address, one request at a time
    await done(frontier, store, got)
    assert (await second).host != got.host  # type: ignore[union-attr]


async def test_idle_hosts_are_evicted_and_their_work_still_done(store: SQLiteStore) -> None:
    hosts = [f"h{i}.test" for i in range(12)]
    await store.add([req(host, n) for host in hosts for n in range(2)])
    frontier = await started(store, max_active_hosts=2, max_hosts=3)
    seen = []
    while (request := await frontier.next()) is not None:
        seen.append(request.url)
        # a link found on the first host's pages, to a host evicted (or never held) by now
        links = [req("h0.test", 9)] if request.host == "h11.test" else []
        await done(frontier, store, request, links=links)
    await frontier.aclose()
    assert sorted(seen) == sorted(
        [f"http://{h}/{n}" for h in hosts for n in range(2)] + ["http://h0.test/9"]
    )
    assert frontier.hosts_peak <= 4  # the limit, and one more while a worker idles
    assert frontier.hosts_evicted >= len(hosts) - 3


async def test_an_evicted_hosts_state_comes_back_from_the_store(store: SQLiteStore) -> None:
    from crawler.store import HostState

    await store.add([req("ok.test", n) for n in range(4)] + [req("dead.test", n) for n in range(3)])
    await store.commit([], [HostState("dead.test", opens=3, open_until=float("inf"))])
    frontier = await started(store, max_active_hosts=1, max_hosts=1)
    seen = []
    while (request := await frontier.next()) is not None:
        seen.append(request.host)
        await done(frontier, store, request)
    await frontier.aclose()
    assert seen == ["ok.test"] * 4  # the host given up in an earlier run stays given up
    assert (await store.counts()).failed == 3
