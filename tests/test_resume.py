"""Crash-safe resume, proven: kill -9 at random moments, Ctrl-C twice, random store crashes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
from pathlib import Path

import pytest

from crawler.store import NewRequest, Outcome, SQLiteStore, State, StoredRequest
from tests.conftest import rows
from tests.helpers import stored_counts, stored_items
from tests.sites import GraphSite
from tests.test_cli import SPIDER, acli, run_args, run_until_hits

pytestmark = pytest.mark.slow  # kill -9 and Ctrl-C of real processes

CONCURRENCY = 8  # SPIDER's custom_settings


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_kill_9_at_random_moments_loses_and_duplicates_nothing(
    graph: GraphSite, tmp_path: Path, seed: int
) -> None:
    (tmp_path / "graph.py").write_text(SPIDER)
    args = run_args(graph, "-o", "items.jsonl")
    rnd = random.Random(seed)
    moments = sorted(rnd.sample(range(15, 285), 3))
    for moment in moments:
        code, _ = await run_until_hits(graph, args, tmp_path, moment, signal.SIGKILL)
        assert code == -signal.SIGKILL
    proc = await acli(*args, cwd=tmp_path)
    _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()

    lines = (tmp_path / "items.jsonl").read_text().splitlines()
    urls = [json.loads(line)["url"] for line in lines]
    assert sorted(urls) == sorted(graph.all_urls())  # every page's item, exactly once
    stored = [json.loads(d)["url"] for d in await stored_items(tmp_path / "graph.db")]
    assert urls == stored  # the file is the store, in commit order
    refetched = sum(n - 1 for n in graph.hits.values())
    assert refetched <= len(moments) * CONCURRENCY
    print(f"seed {seed}: kills at {moments} hits, {refetched} re-fetches, {len(urls)} items")


async def test_a_second_ctrl_c_stops_at_once_and_the_store_stays_consistent(
    tmp_path: Path,
) -> None:
    site = GraphSite(hosts=2, pages=60, links=4, delay=3.0)  # slow pages: a graceful stop waits
    await site.start()
    try:
        (tmp_path / "graph.py").write_text(SPIDER)
        args = run_args(site, "-s", "shutdown_grace=60", "-o", "items.jsonl")
        reached = asyncio.Event()
        site.on_hit = lambda n: reached.set() if n >= 6 else None
        proc = await acli(*args, cwd=tmp_path)
        await reached.wait()
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        seen = b""
        while b"stopping:" not in seen:  # the first Ctrl-C is being handled: pages in flight
            seen += await asyncio.wait_for(proc.stderr.readline(), 30)
        proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(
            asyncio.gather(proc.stderr.read(), proc.wait()),
            30,  # far below the 60 s grace
        )
        stderr = seen + rest
        assert proc.returncode == 130, stderr.decode()
        assert b"stopping now" in stderr
        assert (await stored_counts(tmp_path / "graph.db")).leased == 0
        site.on_hit = None
        site.delay = 0.0
        proc = await acli(*args, cwd=tmp_path)
        _, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr.decode()
        urls = [json.loads(x)["url"] for x in (tmp_path / "items.jsonl").read_text().splitlines()]
        assert sorted(urls) == sorted(site.all_urls())
    finally:
        await site.stop()


def req(n: int) -> NewRequest:
    return NewRequest(url=f"http://h{n % 3}.com/{n}", host=f"h{n % 3}.com")


@pytest.mark.parametrize("seed", range(12))
async def test_random_leases_commits_and_crashes_never_lose_or_duplicate(
    tmp_path: Path, seed: int
) -> None:
    """A model-based test: random interleavings of add, lease, commit (sometimes cancelled in
    the middle), release and crash (closing without releasing) keep every invariant."""
    rnd = random.Random(seed)
    path = tmp_path / f"model-{seed}.db"
    store = await SQLiteStore.open(path, "model")
    discovered: set[str] = set()
    committed_items: dict[str, int] = {}  # url -> items committed with its page
    leased: list[StoredRequest] = []
    next_url = 0
    await store.add([req(0)])
    discovered.add(req(0).url)

    for _ in range(60):
        op = rnd.choice(["lease", "lease", "commit", "commit", "crash", "release", "torn"])
        if op == "lease":
            host = f"h{rnd.randrange(3)}.com"
            leased += await store.lease(host, rnd.randint(1, 4), now=1e12)
        elif op in ("commit", "torn") and leased:
            batch = rnd.sample(leased, rnd.randint(1, len(leased)))
            outcomes = []
            for request in batch:
                links = []
                for _ in range(rnd.randint(0, 3)):
                    next_url += 1
                    links.append(req(next_url))
                state = rnd.choice([State.DONE, State.DONE, State.FAILED, State.QUEUED])
                items = [json.dumps({"u": request.url, "i": i}) for i in range(rnd.randint(0, 2))]
                outcomes.append(
                    Outcome(
                        request,
                        state,
                        request.attempts + 1,
                        links=links,
                        items=items if state is State.DONE else [],
                        latency=rnd.choice([None, 0.1]),  # None: no request went out
                    )
                )
            if op == "commit":
                await store.commit(outcomes)
            else:  # a crash in the middle of the commit
                task = asyncio.create_task(store.commit(outcomes))
                for _ in range(rnd.randint(0, 3)):
                    await asyncio.sleep(0)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                # like any database client's, a commit cancelled while COMMIT runs may have
                # happened: the store says which (a committed outcome bumps its attempts)
                probe = outcomes[0].request
                (attempts,) = rows(path, "SELECT attempts FROM requests WHERE id = ?", (probe.id,))[
                    0
                ]
                if attempts == probe.attempts + 1:
                    op = "commit"  # it happened, whole
            if op == "commit":
                for outcome in outcomes:
                    leased.remove(outcome.request)
                    discovered.update(link.url for link in outcome.links)
                    if outcome.state is State.DONE:
                        committed_items[outcome.request.url] = len(outcome.items)
            else:
                await store.close()  # the crash
                store = await SQLiteStore.open(path, "model")
                leased = []
        elif op == "release":
            await store.release()
            leased = []
        elif op == "crash":
            await store.close()
            store = await SQLiteStore.open(path, "model")
            leased = []

        # invariants, checked against the store itself
        table = {str(u): int(s) for u, s in rows(path, "SELECT url, state FROM requests")}
        assert set(table) >= discovered  # nothing discovered is lost
        items = rows(
            path,
            "SELECT r.url, COUNT(i.id) FROM items i JOIN requests r"
            " ON r.id = i.request_id GROUP BY r.url",
        )
        assert {str(u): n for u, n in items} == {u: n for u, n in committed_items.items() if n}
        for url in committed_items:  # an item is never without its page's done mark
            assert table[url] == State.DONE
        # the totals the triggers keep are a recount's, host by host
        recount = rows(
            path,
            "SELECT host, SUM(state = 0), SUM(state = 1), SUM(state = 2), SUM(state = 3),"
            " (SELECT COUNT(*) FROM items JOIN requests r ON r.id = items.request_id"
            "  WHERE r.host = q.host), SUM(state >= 2 AND latency IS NOT NULL)"
            " FROM requests q GROUP BY host ORDER BY host",
        )
        kept = rows(path, "SELECT * FROM host_counts ORDER BY host")
        assert kept == recount
    await store.close()
