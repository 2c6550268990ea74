"""Duplicate pages in a crawl (settings.duplicates; crawler/page/duplicates.py): a page whose
body repeats one crawled before, or whose text nearly does, is marked on its record (the
`duplicates` command, `response.duplicate_of`), counted, and with "nofollow" its links are not
queued; the index is rebuilt from the store, so a resumed crawl judges against every page."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from crawler import ConfigError, Request, Response, Settings, Spider
from crawler.store import open_readonly
from tests.helpers import crawl, crawler_cli, stored_items, stored_summary

_WORDS = [f"word{i}" for i in range(3000)]


def prose(seed: int, n: int = 300) -> list[str]:
    rnd = random.Random(seed)
    return [rnd.choice(_WORDS) for _ in range(n)]


ARTICLE = prose(1)
EDITED = [*ARTICLE[:150], "changed", *ARTICLE[151:]]  # one word of 300


def page(words: list[str], links: list[str], footer: str = "") -> str:
    anchors = "".join(f'<a href="{link}">{link}</a> ' for link in links)
    return (
        f"<html><head><title>t</title></head><body><nav>{anchors}</nav>"
        f"<article><p>{' '.join(words)}</p></article><footer>{footer}</footer></body></html>"
    )


#: The site: /a; /copy, the same bytes as /a; /edit, /a with one word changed, another footer
#: and a link of its own (to /only-from-edit); /other, unrelated; two JSON answers alike.
SITE = {
    "/": page(prose(9, 50), ["/a"]),
    "/a": page(ARTICLE, ["/copy", "/edit", "/other"]),
    "/edit": page(EDITED, ["/only-from-edit"], footer="(c) 2026"),
    "/other": page(prose(2), ["/from-other"]),
    "/from-other": page(prose(3), []),
    "/only-from-edit": page(prose(4), []),
    "/api": '{"same": "json"}',
    "/api2": '{"same": "json"}',
}
SITE["/copy"] = SITE["/a"]


def handler(request: httpx.Request) -> httpx.Response:
    body = SITE.get(request.url.path)
    if body is None:
        return httpx.Response(404)
    kind = "application/json" if body.startswith("{") else "text/html"
    return httpx.Response(200, content=body.encode(), headers={"content-type": kind})


class Site(Spider):
    name = "site"
    start_urls = ["http://site.test/"]
    seen: dict[str, str | None] = {}

    async def parse(self, response: Response) -> Any:
        Site.seen[response.url.removeprefix("http://site.test")] = response.duplicate_of
        if response.url.endswith("/a"):
            for path in ("/api", "/api2"):
                yield Request(
                    f"http://site.test{path}",
                    callback=self.parse_api,
                    headers={"accept": "application/json"},
                )
        yield {"page": response.url}
        for url in response.links():
            yield Request(url)

    async def parse_api(self, response: Response) -> Any:
        Site.seen[response.url.removeprefix("http://site.test")] = response.duplicate_of
        yield {"api": response.url}


async def duplicates_in(path: Path) -> list[dict[str, Any]]:
    store = await open_readonly(path)
    try:
        return [d async for d in store.duplicates()]
    finally:
        await store.close()


async def test_duplicates_are_marked_and_counted(tmp_path: Path) -> None:
    Site.seen = {}
    await crawl(Site(), handler, tmp_path / "s.db", duplicates="mark", concurrency=1)
    a = "http://site.test/a"
    assert Site.seen["/copy"] == a  # exact
    assert Site.seen["/edit"] == a  # near
    assert Site.seen["/api2"] == "http://site.test/api"  # JSON: by its body
    assert [Site.seen[p] for p in ("/", "/a", "/other")] == [None, None, None]
    assert "/only-from-edit" in Site.seen  # "mark" follows a duplicate's links
    assert await duplicates_in(tmp_path / "s.db") == [  # in the order they were queued
        {"url": "http://site.test/api2", "duplicate_of": "http://site.test/api", "kind": "exact"},
        {"url": "http://site.test/copy", "duplicate_of": a, "kind": "exact"},
        {"url": "http://site.test/edit", "duplicate_of": a, "kind": "near"},
    ]
    summary = await stored_summary(tmp_path / "s.db")
    assert summary.counters["duplicates:exact"] == 2
    assert summary.counters["duplicates:near"] == 1


async def test_nofollow_keeps_a_duplicates_items_and_drops_its_links(tmp_path: Path) -> None:
    Site.seen = {}
    await crawl(Site(), handler, tmp_path / "s.db", duplicates="nofollow", concurrency=1)
    assert "/only-from-edit" not in Site.seen
    assert "/from-other" in Site.seen
    items = [json.loads(item) for item in await stored_items(tmp_path / "s.db")]
    assert {"page": "http://site.test/edit"} in items  # its items are kept
    summary = await stored_summary(tmp_path / "s.db")
    assert summary.counters["duplicates:unfollowed"] == 1


async def test_nothing_is_fingerprinted_when_off(tmp_path: Path) -> None:
    Site.seen = {}
    await crawl(Site(), handler, tmp_path / "s.db")
    assert set(Site.seen.values()) == {None}
    assert await duplicates_in(tmp_path / "s.db") == []


async def test_a_resumed_crawl_judges_against_the_pages_of_earlier_runs(tmp_path: Path) -> None:
    Site.seen = {}
    store = tmp_path / "s.db"
    # the first run stops after the home page and /a (one worker, in discovery order)
    await crawl(Site(), handler, store, duplicates="mark", concurrency=1, max_pages=2)
    assert set(Site.seen) == {"/", "/a"}
    Site.seen = {}
    await crawl(Site(), handler, store, duplicates="mark", concurrency=1)
    assert Site.seen["/copy"] == "http://site.test/a"
    assert Site.seen["/edit"] == "http://site.test/a"
    assert len(await duplicates_in(store)) == 3


def test_the_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="'duplicates' must be one of off, mark, nofollow"):
        Settings().merge({"duplicates": "skip"})
    with pytest.raises(ConfigError, match="duplicate_similarity"):
        Settings().merge({"duplicate_similarity": 0.2})


async def test_the_duplicates_command_and_the_crawl_commands_records(tmp_path: Path) -> None:
    Site.seen = {}
    await crawl(Site(), handler, tmp_path / "s.db", duplicates="mark", concurrency=1)
    code, out, err = await crawler_cli("duplicates", "--store", "s.db", cwd=tmp_path)
    assert code == 0, err
    assert [json.loads(line)["url"] for line in out.splitlines()] == [
        "http://site.test/api2",
        "http://site.test/copy",
        "http://site.test/edit",
    ]
    assert "3 duplicate pages" in err
    code, out, err = await crawler_cli("stats", "--store", "s.db", cwd=tmp_path)
    assert "duplicate pages: 2 exact, 1 near" in out
