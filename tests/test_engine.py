"""The engine over httpx.MockTransport: no sockets, every response scripted."""

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crawler import ConfigError, Request, Response, Spider
from tests.conftest import rows
from tests.helpers import crawl, html, stored_counts, stored_failures, stored_items


class Links(Spider):
    name = "links"
    start_urls = ["http://a.com/"]

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url, "depth": response.depth}
        for url in response.links():
            yield Request(url)


def by_url(path: Path) -> dict[str, tuple[Any, ...]]:
    found = rows(path, "SELECT url, state, status, error, attempts, message FROM requests")
    return {str(row[0]): row[1:] for row in found}


async def test_transient_failures_are_retried_then_recorded(store_path: Path) -> None:
    calls: Counter[str] = Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        calls[path] += 1
        if path == "/":
            return html('<a href="/flaky">f</a><a href="/dead">d</a><a href="/gone">g</a>')
        if path == "/flaky" and calls[path] <= 2:
            return httpx.Response(503)
        if path == "/dead":
            return httpx.Response(500)
        if path == "/gone":
            return httpx.Response(404)
        return html("ok")

    stats = await crawl(Links(), handler, store_path, max_retries=2)
    table = by_url(store_path)
    assert table["http://a.com/flaky"][:4] == (2, 200, None, 3)
    assert table["http://a.com/dead"][:4] == (3, 500, "http_status", 3)
    assert table["http://a.com/gone"][:4] == (3, 404, "http_status", 1)
    assert calls == {"/": 1, "/flaky": 3, "/dead": 3, "/gone": 1}
    assert (stats.pages, stats.failed, stats.retried, stats.items) == (4, 2, 4, 2)


async def test_non_html_is_visited_but_not_parsed_unless_asked(store_path: Path) -> None:
    class Mixed(Spider):
        name = "mixed"
        start_urls = ["http://a.com/"]

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            if response.url.endswith("/"):
                yield Request("http://a.com/img.png")
                yield Request(
                    "http://a.com/data.json", callback=self.parse_json, any_content_type=True
                )
            yield {"url": response.url}

        async def parse_json(self, response: Response) -> AsyncIterator[Any]:
            yield {"json": response.text}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/img.png":
            return httpx.Response(200, content=b"\x89PNG", headers={"Content-Type": "image/png"})
        if request.url.path == "/data.json":
            return httpx.Response(200, json={"k": 1})
        return html("")

    stats = await crawl(Mixed(), handler, store_path)
    assert by_url(store_path)["http://a.com/img.png"][0:2] == (2, 200)
    assert by_url(store_path)["http://a.com/img.png"][4] == "not parsed: image/png"
    assert await stored_items(store_path) == [
        '{"url": "http://a.com/"}',
        '{"json": "{\\"k\\":1}"}',
    ]
    assert stats.items == 2


async def test_callback_errors_fail_the_page_and_keep_nothing_from_it(
    store_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Buggy(Spider):
        name = "buggy"
        start_urls = ["http://a.com/"]

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            path = response.url.split("/", 3)[3]
            if path == "":
                for name in ("boom", "relative", "object", "lambda", "fine"):
                    yield Request(f"http://a.com/{name}")
                return
            if path.startswith("from-"):
                return
            yield {"partial": path}
            yield Request("http://a.com/from-" + path)
            if path == "boom":
                raise KeyError("missing")
            if path == "relative":
                yield Request("/not/absolute")
            if path == "object":
                yield object()
            if path == "lambda":
                yield Request("http://a.com/x", callback=lambda r: None)

    stats = await crawl(Buggy(), lambda request: html(""), store_path)
    table = by_url(store_path)
    assert table["http://a.com/boom"][:3] == (3, 200, "spider")
    assert "parse() raised KeyError" in table["http://a.com/boom"][4]
    assert "not absolute: use response.follow()" in table["http://a.com/relative"][4]
    assert "yielded a object" in table["http://a.com/object"][4]
    assert "not a method of the spider" in table["http://a.com/lambda"][4]
    assert table["http://a.com/fine"][0] == 2
    # a failed page's items and links were discarded with it
    assert await stored_items(store_path) == ['{"partial": "fine"}']
    assert "http://a.com/from-boom" not in table
    assert "http://a.com/from-fine" in table
    assert stats.failed == 4
    assert "KeyError" in caplog.text  # the user's traceback is logged


async def test_callbacks_meta_priority_and_depth_round_trip(store_path: Path) -> None:
    class Detail(Spider):
        name = "detail"
        start_urls = ["http://a.com/"]

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            for n in range(3):
                yield response.follow(
                    f"/d{n}", callback=self.parse_detail, meta={"n": n}, priority=n
                )

        def parse_detail(self, response: Response) -> list[dict[str, Any]]:  # plain function
            return [
                {
                    "n": response.request.meta["n"],
                    "depth": response.depth,
                    "cb": response.request.callback_name,
                }
            ]

    await crawl(
        Detail(), lambda request: html(""), store_path, concurrency=1, per_domain_concurrency=1
    )
    items = await stored_items(store_path)
    assert items == [  # one at a time: highest priority first
        '{"n": 2, "depth": 1, "cb": "parse_detail"}',
        '{"n": 1, "depth": 1, "cb": "parse_detail"}',
        '{"n": 0, "depth": 1, "cb": "parse_detail"}',
    ]


async def test_redirect_target_is_what_the_spider_sees_and_is_marked_visited(
    store_path: Path,
) -> None:
    seen: Counter[str] = Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.url.path] += 1
        if request.url.path == "/":
            return httpx.Response(302, headers={"Location": "/home"})
        if request.url.path == "/home":
            return html('<a href="/home">self</a><a href="/away">away</a>')
        if request.url.path == "/away":
            return httpx.Response(302, headers={"Location": "http://b.com/"})
        return html("")

    await crawl(Links(), handler, store_path)
    table = by_url(store_path)
    assert (await stored_items(store_path))[0] == '{"url": "http://a.com/home", "depth": 0}'
    assert table["http://a.com/home"][0] == 2
    assert seen["/home"] == 1  # the link to the redirect target was not fetched again
    assert table["http://a.com/away"][:3] == (3, None, "redirect_out_of_scope")


async def test_stored_callbacks_must_exist_when_the_crawl_starts(store_path: Path) -> None:
    class Before(Spider):
        name = "evolving"
        start_urls = ["http://a.com/"]

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield Request("http://a.com/next", callback=self.parse_old)

        async def parse_old(self, response: Response) -> AsyncIterator[Any]:
            yield {}

    await crawl(Before(), lambda r: html(""), store_path, max_pages=1)

    class After(Spider):
        name = "evolving"
        start_urls = ["http://a.com/"]

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {}

    with pytest.raises(ConfigError, match="no callback method 'parse_old'"):
        await crawl(After(), lambda r: html(""), store_path)


async def test_a_spider_without_parse_is_a_config_error(store_path: Path) -> None:
    class NoParse(Spider):
        name = "noparse"
        start_urls = ["http://a.com/"]

    with pytest.raises(ConfigError, match="parse callback is not defined"):
        await crawl(NoParse(), lambda r: html(""), store_path)


async def test_bad_start_urls_are_config_errors(store_path: Path) -> None:
    class BadStart(Spider):
        name = "badstart"
        start_urls = ["example.com/no-scheme"]

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {}

    with pytest.raises(ConfigError, match="not an absolute http"):
        await crawl(BadStart(), lambda r: html(""), store_path)


async def test_a_failing_store_stops_the_crawl_with_a_store_error(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crawler import StoreError
    from crawler.store import SQLiteStore

    real_commit = SQLiteStore.commit
    commits = 0

    async def failing_commit(self: SQLiteStore, *args: Any, **kwargs: Any) -> Any:
        nonlocal commits
        commits += 1
        if commits > 2:
            raise StoreError("store crawl.db: database or disk is full")
        return await real_commit(self, *args, **kwargs)

    monkeypatch.setattr(SQLiteStore, "commit", failing_commit)
    endless = lambda request: html(f'<a href="{request.url.path}x">next</a>')  # noqa: E731
    with pytest.raises(StoreError, match="disk is full"):
        await crawl(Links(), endless, store_path)
    monkeypatch.undo()
    counts = await stored_counts(store_path)
    assert counts.done == 2  # what was committed is intact; the rest will be fetched again
    assert counts.leased == 0


async def test_retry_after_beyond_the_cap_fails_the_url_with_the_reason(store_path: Path) -> None:
    calls: Counter[str] = Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        calls[request.url.path] += 1
        if request.url.path == "/":
            return html('<a href="/later">later</a><a href="/teapot">t</a>')
        if request.url.path == "/teapot":
            return httpx.Response(418)
        return httpx.Response(429, headers={"Retry-After": "86400"})

    await crawl(Links(), handler, store_path, max_retry_after=60.0, retry_statuses="418")
    later = by_url(store_path)["http://a.com/later"]
    assert later[:4] == (3, 429, "http_status", 1)
    assert "Retry-After 86400 s exceeds max_retry_after" in later[4]
    assert calls["/later"] == 1
    assert calls["/teapot"] == 3  # retry_statuses decides what is transient


async def test_traps_are_recorded_with_their_reason_and_never_fetched(store_path: Path) -> None:
    fetched: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        fetched.append(request.url.path)
        # every page links one level deeper into a loop of relative links
        return html(
            '<a href="a/b/">deeper</a><a href="/?'
            + "&".join(f"p{i}=1" for i in range(40))
            + '">q</a>'
        )

    await crawl(Links(), handler, store_path)
    reasons = {str(f["message"]) for f in await stored_failures(store_path, error="trap")}
    assert any("repeated more than 3 times" in r for r in reasons)
    assert any("more than 32 query parameters" in r for r in reasons)
    assert not any("?" in path for path in fetched)
    assert max(path.count("/a/") for path in fetched) <= 3


async def test_nofollow_and_noindex_are_respected_unless_switched_off(tmp_path: Path) -> None:
    pages = {
        "/": '<a href="/plain">1</a><a rel="nofollow" href="/hidden">2</a>'
        '<a href="/meta-nofollow">3</a><a href="/noindex">4</a><a href="/header">5</a>',
        "/meta-nofollow": '<meta name="robots" content="nofollow"><a href="/behind">x</a>',
        "/noindex": '<meta name="robots" content="noindex"><a href="/after-noindex">x</a>',
        "/header": '<a href="/behind-header">x</a>',
    }

    def handler(request: httpx.Request) -> httpx.Response:
        body = pages.get(request.url.path, "")
        headers = {"X-Robots-Tag": "none"} if request.url.path == "/header" else {}
        return httpx.Response(
            200, headers=headers, html=f"<html><head></head><body>{body}</body></html>"
        )

    await crawl(Links(), handler, tmp_path / "obey.db")
    visited = {
        str(u).split("a.com", 1)[1]
        for (u,) in rows(tmp_path / "obey.db", "SELECT url FROM requests")
    }
    assert visited == {"/", "/plain", "/meta-nofollow", "/noindex", "/header", "/after-noindex"}
    items = set(await stored_items(tmp_path / "obey.db"))
    assert not any("/noindex" in i or "/header" in i for i in items)

    await crawl(Links(), handler, tmp_path / "ignore.db", obey_nofollow=False)
    visited = {
        str(u).split("a.com", 1)[1]
        for (u,) in rows(tmp_path / "ignore.db", "SELECT url FROM requests")
    }
    assert {"/hidden", "/behind", "/behind-header"} <= visited


async def test_deny_patterns_keep_urls_out(store_path: Path) -> None:
    class Shop(Links):
        name = "shop"
        deny = [r"/cart", r"[?&]sort="]

    def handler(request: httpx.Request) -> httpx.Response:
        return html('<a href="/cart/add">c</a><a href="/list?sort=asc">s</a><a href="/list">l</a>')

    await crawl(Shop(), handler, store_path)
    urls = {str(u) for (u,) in rows(store_path, "SELECT url FROM requests")}
    assert urls == {"http://a.com/", "http://a.com/list"}


async def test_a_full_disk_stops_the_crawl_cleanly_and_the_store_resumes(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's max_page_count makes writes fail with SQLITE_FULL, as a full disk does."""
    import sqlite3

    from crawler import StoreError
    from crawler.store import SQLiteStore

    real_prepare = SQLiteStore._prepare

    async def small_disk(self: SQLiteStore, spider_name: str) -> None:
        await real_prepare(self, spider_name)
        pages = (await self._fetchall("PRAGMA page_count"))[0][0]
        await self._db.execute(f"PRAGMA max_page_count = {pages + 6}")

    def handler(request: httpx.Request) -> httpx.Response:
        n = int(request.url.path.strip("/") or 0)
        links = "".join(f'<a href="/{n * 10 + i}">x</a>' for i in range(1, 11))
        return html(links + "<p>" + "y" * 2000 + "</p>")

    class Big(Spider):
        name = "big"
        start_urls = ["http://a.com/"]

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url, "pad": "z" * 3000}
            for url in response.links():
                yield Request(url)

    monkeypatch.setattr(SQLiteStore, "_prepare", small_disk)
    with pytest.raises(StoreError, match="full"):
        await crawl(Big(), handler, store_path, max_pages=2000)
    monkeypatch.undo()
    with sqlite3.connect(store_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        done = db.execute("SELECT COUNT(*) FROM requests WHERE state = 2").fetchone()[0]
        items = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    assert done == items > 0  # every committed page has its item, and no more
    stats = await crawl(Big(), handler, store_path, max_pages=done + 20)
    assert stats.ended == "max_pages"
    assert (await stored_counts(store_path)).items == done + 20


class Spelled(Spider):
    """Links to 127.0.0.2 and 127.0.0.3 in the spellings browsers accept, and to hosts they
    reject as IPv4 addresses."""

    name = "spelled"
    start_urls = ["http://127.0.0.2/"]
    allowed_domains: list[str] = []  # any host

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url}
        if response.url == "http://127.0.0.2/":
            for host in ("2130706434", "0x7f000002", "0177.0.0.2", "127.2", "127.0.0.2."):
                yield Request(f"http://{host}/same")
            for host in ("0x7f000003", "2130706435"):
                yield Request(f"http://{host}/other")
            yield Request("http://0177.0.0.256/bad")
            yield Request("http://127.0.0.2.5/bad")


async def test_ipv4_hosts_in_any_spelling_are_one_host_and_invalid_ones_are_recorded(
    store_path: Path,
) -> None:
    fetched: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        return html("")

    await crawl(Spelled(), handler, store_path, allow_private_networks=True)
    assert sorted(fetched) == [
        "http://127.0.0.2/",
        "http://127.0.0.2/same",
        "http://127.0.0.3/other",
    ]
    invalid = rows(
        store_path, "SELECT url, host, message FROM requests WHERE error = 'invalid_url'"
    )
    assert {(str(u), str(h)) for u, h, _ in invalid} == {
        ("http://0177.0.0.256/bad", "0177.0.0.256"),
        ("http://127.0.0.2.5/bad", "127.0.0.2.5"),
    }
    assert all("invalid IPv4 address" in str(m) for *_, m in invalid)


async def test_hosts_the_spider_names_may_be_private_and_no_others(store_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return html("")

    await crawl(Spelled(), handler, store_path)  # only the start host is named
    blocked = await stored_failures(store_path, error="blocked_address")
    assert [f["url"] for f in blocked] == ["http://127.0.0.3/other"]
    assert "allow_private_networks=true" in blocked[0]["message"]

    named = Spelled()
    named.allowed_domains = ["127.0.0.2", "0x7f000003"]  # 127.0.0.3, in another spelling
    await crawl(named, handler, store_path.with_name("named.db"))
    done = rows(store_path.with_name("named.db"), "SELECT url FROM requests WHERE state = 2")
    assert {str(u) for (u,) in done} == {
        "http://127.0.0.2/",
        "http://127.0.0.2/same",
        "http://127.0.0.3/other",
    }


async def test_bad_allowed_domains_are_config_errors(store_path: Path) -> None:
    bad = Spelled()
    bad.allowed_domains = ["1.2.3.256"]
    with pytest.raises(ConfigError, match=r"allowed_domains: invalid IPv4 address '1\.2\.3\.256'"):
        await crawl(bad, lambda r: html(""), store_path)
    start = Spelled()
    start.start_urls = ["http://0x7g.1/"]
    with pytest.raises(ConfigError, match=r"start URL 'http://0x7g.1/': invalid IPv4 address"):
        await crawl(start, lambda r: html(""), store_path)


async def test_links_back_to_a_start_url_do_not_send_the_host_back_to_the_store(
    store_path: Path,
) -> None:
    """Every page links home (a start URL): queued in this run already, so the link is left
    out rather than sent to the store, which would ignore it and have the frontier look for
    the host's rows again (a lease and a look for the next due row, per host)."""
    from crawler import Crawler, Settings
    from crawler.store import SQLiteStore
    from tests.helpers import public_resolver

    class Home(Spider):
        name = "home"
        start_urls = [f"http://h{i}.test/" for i in range(3)]

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield Request(response.urljoin("/a" if response.url.endswith("/") else "/"))

    leased: Counter[str] = Counter()
    async with await SQLiteStore.open(store_path, "home") as store:
        lease = store.lease

        async def counted(host: str, limit: int, now: float) -> Any:
            leased[host] += 1
            return await lease(host, limit, now)

        store.lease = counted  # type: ignore[method-assign]
        stats = await Crawler(
            Home(),
            Settings(obey_robots=False, concurrency=2),
            store=store,
            transport=httpx.MockTransport(lambda request: html("page")),
            resolver=public_resolver,
        ).run()
    assert stats.pages == 6
    assert leased == {f"h{i}.test": 2 for i in range(3)}  # its start URL, then /a
