"""kill -9 at random moments with pipelines that transform, drop and deduplicate (on the
spider's state), counters and two sinks: what is stored, exported and upserted into PostgreSQL
equals an uninterrupted crawl, every item once."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import uuid
from pathlib import Path

import asyncpg
import pytest

from crawler.store.postgres import schema_name
from tests.conftest import rows
from tests.sites import GraphSite
from tests.test_cli import acli, cli, run_args

SPIDER = """
import os
from crawler import DropItem, PostgresSink, Request, Spider

class Transform:
    def process_item(self, item, spider):
        host, page = item.pop("title").lstrip("h").split("-p")
        return {**item, "host": int(host), "page": int(page), "label": f"H{host}/P{page}"}

class DropUnlucky:
    def process_item(self, item, spider):
        if item["page"] % 7 == 3:
            raise DropItem("unlucky")
        return item

class Dedup:
    async def process_item(self, item, spider):
        key = f"{item['host']}-{item['page'] % 25}"
        seen = spider.state.setdefault("keys", {})
        if key in seen:
            raise DropItem("duplicate")
        seen[key] = item["url"]
        return {**item, "key": key}

class Graph(Spider):
    name = "graph"
    start_urls = []
    custom_settings = {"obey_robots": False, "concurrency": 8, "per_domain_concurrency": 2}
    pipelines = [Transform(), DropUnlucky(), Dedup()]
    sinks = [PostgresSink(os.environ["SINK_DSN"], table=os.environ["SINK_TABLE"])]

    async def parse(self, response):
        self.stats.inc("pages seen")
        yield {"url": response.url, "title": response.css_first("title").text()}
        for url in response.links():
            yield Request(url)
"""


def expected_keys(site: GraphSite) -> set[str]:
    return {
        f"{h}-{p % 25}" for h in range(len(site.hosts)) for p in range(site.pages) if p % 7 != 3
    }


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_kill_9_at_random_moments_keeps_pipelines_state_and_sinks_exact(
    graph: GraphSite,
    tmp_path: Path,
    postgres_dsn: str,
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    if backend == "sqlite":
        name, store = "graph", ["--store", "graph.db"]
    else:
        name = request.getfixturevalue("pg_spider")
        store = ["--store", postgres_dsn, "--spider", name]
    (tmp_path / "graph.py").write_text(SPIDER.replace('name = "graph"', f'name = "{name}"'))
    table = f"sink_{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "SINK_DSN": postgres_dsn, "SINK_TABLE": table}
    seed = random.randrange(1_000_000)
    rnd = random.Random(seed)
    total = len(graph.all_urls())
    moments = sorted(rnd.sample(range(20, total - 20), 3))
    args = run_args(graph, "-o", "items.jsonl", *store[:2])
    if backend == "postgres":  # a killed process's hosts pass on when its leases run out
        args += ["-s", "lease_ttl=2"]
    codes = []
    for moment in moments:
        reached = asyncio.Event()
        graph.on_hit = lambda n, at=moment, ev=reached: ev.set() if n >= at else None
        proc = await acli(*args, cwd=tmp_path, env=env)
        waiter = asyncio.create_task(reached.wait())
        ended = asyncio.create_task(proc.wait())
        await asyncio.wait({waiter, ended}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if proc.returncode is None:
            # a random moment within the next few pages: mid-fetch, mid-pipeline or mid-commit
            await asyncio.sleep(rnd.uniform(0, 0.02))
            proc.send_signal(signal.SIGKILL)
        await proc.communicate()
        codes.append(proc.returncode)
        graph.on_hit = None
    proc = await acli(*args, cwd=tmp_path, env=env)
    _, stderr = await proc.communicate()
    assert proc.returncode == 0, f"seed {seed}: {stderr.decode()}"
    assert -signal.SIGKILL in codes, f"seed {seed}: no run was killed ({codes})"

    # the store: one item per dedup key, transformed, none of the dropped pages
    result = cli("export", *store, "-o", "all.jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    items = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    keys = [item["key"] for item in items]
    assert sorted(keys) == sorted(expected_keys(graph)), f"seed {seed}"
    assert all(item["page"] % 7 != 3 for item in items)
    assert all(item["label"] == f"H{item['host']}/P{item['page']}" for item in items)
    assert all("title" not in item for item in items)

    # the counters, each page counted once across the kills
    stats = json.loads(cli("stats", *store, "--json", cwd=tmp_path).stdout)
    unlucky = sum(1 for _ in range(len(graph.hosts)) for p in range(graph.pages) if p % 7 == 3)
    assert stats["dropped_items"] == {
        "duplicate": total - unlucky - len(items),
        "unlucky": unlucky,
    }, f"seed {seed}"
    assert stats["stats"] == {"pages seen": total}, f"seed {seed}"

    # -o items.jsonl, written as the crawl went and across the kills: the same, in order
    followed = [json.loads(line) for line in (tmp_path / "items.jsonl").read_text().splitlines()]
    assert followed == items, f"seed {seed}"

    # the PostgreSQL sink table: exactly the stored items, by id
    connection = await asyncpg.connect(postgres_dsn)
    try:
        found = await connection.fetch(f'SELECT id, data FROM "{table}" ORDER BY id')
        await connection.execute(f'DROP TABLE "{table}"')
        if backend == "postgres":
            ids = [
                r["id"]
                for r in await connection.fetch(
                    f'SELECT id FROM "{schema_name(name)}".items ORDER BY id'
                )
            ]
    finally:
        await connection.close()
    if backend == "sqlite":
        ids = [int(str(i)) for (i,) in rows(tmp_path / "graph.db", "SELECT id FROM items")]
    assert [r["id"] for r in found] == ids
    assert [json.loads(r["data"]) for r in found] == items, f"seed {seed}"
