"""Requests beyond GET through the engine, over httpx.MockTransport: methods and bodies, JSON
APIs, cookies and sessions (kept in the store), errbacks, allow_status, dont_filter."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crawler import (
    ConfigError,
    Crawler,
    Failure,
    FormRequest,
    JsonRequest,
    Request,
    Response,
    Settings,
    Spider,
)
from crawler.store import SQLiteStore
from tests.helpers import Handler, crawl, html, stored_counts, stored_failures, stored_items
from tests.sites import serve


async def items(path: Path) -> list[dict[str, Any]]:
    return [json.loads(data) for data in await stored_items(path)]


class Api(Spider):
    """Pages through a JSON search API (POST) until it says there is no next page."""

    name = "api"

    def start_requests(self) -> list[Request]:
        return [JsonRequest("http://shop.example/api/search", data={"q": "tea", "page": 1})]

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        page = response.json()
        for result in page["results"]:
            yield result
        if page["next_page"]:
            body = {"q": "tea", "page": page["next_page"]}
            yield JsonRequest(response.url, data=body)
            yield JsonRequest(response.url, data=body)  # twice: one request


async def test_a_json_api_is_paged_through_with_posts(store_path: Path) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append((request.method, body))
        assert request.headers["content-type"] == "application/json"
        page = body["page"]
        return httpx.Response(
            200,
            json={"results": [{"n": page * 10 + i} for i in range(2)], "next_page": page + 1}
            if page < 3
            else {"results": [], "next_page": None},
        )

    stats = await crawl(Api(), handler, store_path)
    assert stats.ended == "complete"
    assert seen == [("POST", {"q": "tea", "page": n}) for n in (1, 2, 3)]  # one POST per body
    assert await items(store_path) == [{"n": 10}, {"n": 11}, {"n": 20}, {"n": 21}]


class Methods(Spider):
    name = "methods"
    start_urls = ["http://a.example/"]

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"method": response.request.method, "body": response.text}
        if response.request.method == "GET" and response.url == "http://a.example/":
            for _ in range(2):  # each distinct request once, however often it is yielded
                yield Request("http://a.example/x")
                yield Request("http://a.example/x", method="POST", body=b"one")
                yield Request("http://a.example/x", method="POST", body=b"two")
                yield Request("http://a.example/x", method="DELETE")
            yield FormRequest("http://a.example/form", formdata={"a": "1"})


async def test_method_and_body_make_a_request_distinct(store_path: Path) -> None:
    sent: Counter[tuple[str, str, bytes]] = Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        sent[request.method, request.url.path, request.content] += 1
        if request.url.path == "/form" and request.method == "POST":
            return httpx.Response(303, headers={"Location": "/done"})  # the browser GETs /done
        return html(f"{request.method} {request.content.decode()}")

    await crawl(Methods(), handler, store_path)
    assert sent == {
        ("GET", "/", b""): 1,
        ("GET", "/x", b""): 1,
        ("POST", "/x", b"one"): 1,
        ("POST", "/x", b"two"): 1,
        ("DELETE", "/x", b""): 1,
        ("POST", "/form", b"a=1"): 1,
        ("GET", "/done", b""): 1,  # after the 303: a GET without the body
    }
    assert (await stored_counts(store_path)).failed == 0


class Logins(Spider):
    """Logs in twice, as alice and bob, each in a session of its own, and reads who it is."""

    name = "logins"

    def start_requests(self) -> list[Request]:
        return [
            FormRequest(
                "http://a.example/login",
                formdata={"user": user},
                session=user,
                callback=self.logged_in,
            )
            for user in ("alice", "bob")
        ] + [Request("http://a.example/me", cookies={"theme": "dark"})]

    async def logged_in(self, response: Response) -> AsyncIterator[Any]:
        yield response.follow("/me")  # in the same session

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        body = response.css_first("body")
        yield {"session": response.request.session, "page": body.text() if body else ""}


def cookie_site(handler_log: list[tuple[str, str]]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        cookie = request.headers.get("cookie", "")
        handler_log.append((request.url.path, cookie))
        if request.url.path == "/login":
            user = request.content.decode().split("=")[1]
            return httpx.Response(
                302, headers={"Location": "/welcome", "Set-Cookie": f"sid={user}; Path=/"}
            )
        if request.url.path == "/welcome":
            return html("welcome")
        return html(f"cookies: {cookie or '-'}")

    return handler


async def test_sessions_keep_cookie_jars_apart_and_in_the_store(store_path: Path) -> None:
    log: list[tuple[str, str]] = []
    await crawl(Logins(), cookie_site(log), store_path)
    assert sorted((i["session"] or "", i["page"]) for i in await items(store_path)) == [
        ("", "cookies: theme=dark"),
        ("alice", "cookies: sid=alice"),
        ("bob", "cookies: sid=bob"),
    ]
    async with await SQLiteStore.open_readonly(store_path) as store:
        jars = await store.jars()
    assert set(jars) == {"", "alice", "bob"}
    assert '"value":"alice"' in jars["alice"]
    assert '"value":"dark"' in jars[""]


class StillLoggedIn(Spider):
    name = "logins"
    start_urls = ["http://a.example/me?second"]

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"page": response.url}
        if response.url.endswith("?second"):
            yield Request("http://a.example/me?again", session="alice")


async def test_a_resumed_crawl_is_still_logged_in(store_path: Path) -> None:
    log: list[tuple[str, str]] = []
    await crawl(Logins(), cookie_site(log), store_path)
    log.clear()
    await crawl(StillLoggedIn(), cookie_site(log), store_path)  # new URLs, same store
    assert ("/me", "sid=alice") in [(p.split("?")[0], c) for p, c in log]
    assert not any(path == "/login" for path, _ in log)


class Errbacks(Spider):
    name = "errbacks"
    start_urls = ["http://a.example/"]
    allow_status = (410,)

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        if response.url == "http://a.example/":
            for path in ("/missing", "/gone", "/broken", "/slow"):
                yield Request(
                    f"http://a.example{path}",
                    errback=self.failed,
                    allow_status=(404,) if path == "/missing" else (),
                )
            yield Request("http://a.example/broken?plain")
            return
        yield {"parsed": response.url, "status": response.status}

    async def failed(self, request: Request, failure: Failure) -> AsyncIterator[Any]:
        body = failure.response.body.decode() if failure.response is not None else None
        yield {"failed": request.url, "kind": failure.kind, "status": failure.status, "body": body}
        yield Request("http://a.example/after-failure")


async def test_errbacks_and_allowed_statuses(store_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/missing":
            return httpx.Response(404, html="no such page")
        if path == "/gone":
            return httpx.Response(410, html="gone for good")
        if path == "/broken":
            return httpx.Response(500, text="oops")
        if path == "/slow":
            raise httpx.ConnectError("refused")
        return html("ok")

    await crawl(Errbacks(), handler, store_path, max_retries=1, breaker_threshold=100)
    found = await items(store_path)
    assert {"parsed": "http://a.example/missing", "status": 404} in found  # its own allow_status
    assert {"parsed": "http://a.example/gone", "status": 410} in found  # the spider's
    assert {
        "failed": "http://a.example/broken",
        "kind": "http_status",
        "status": 500,
        "body": "oops",
    } in found
    assert {
        "failed": "http://a.example/slow",
        "kind": "connect",
        "status": None,
        "body": None,
    } in found
    assert {"parsed": "http://a.example/after-failure", "status": 200} in found
    assert len(found) == 5  # /broken?plain has no errback: just recorded
    failed = sorted((f["url"], f["error"]) for f in await stored_failures(store_path))
    assert failed == [
        ("http://a.example/broken", "http_status"),
        ("http://a.example/broken?plain", "http_status"),
        ("http://a.example/slow", "connect"),
    ]


class Poll(Spider):
    name = "poll"
    start_urls = ["http://a.example/status"]

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        state = response.css_first("body")
        seen = state.text() if state else ""
        yield {"seen": seen}
        if seen != "ready":
            yield Request(response.url, dont_filter=True)  # poll again
            yield Request(response.url)  # filtered: seen already


async def test_dont_filter_fetches_a_seen_request_again(store_path: Path) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return html("ready" if calls == 3 else "busy")

    await crawl(Poll(), handler, store_path)
    assert calls == 3
    assert [i["seen"] for i in await items(store_path)] == ["busy", "busy", "ready"]


async def test_bad_requests_are_errors_when_the_crawl_starts(store_path: Path) -> None:
    class BadStart(Spider):
        name = "bad"

        def start_requests(self) -> list[Request]:
            return [JsonRequest("http://a.example/", data={"a": 1}, body=b"x")]

    with pytest.raises(ConfigError, match="JsonRequest takes `data` or `body`, not both"):
        await crawl(BadStart(), lambda r: html(""), store_path)

    class Foreign(Spider):
        name = "foreign"

        def start_requests(self) -> list[Request]:
            return [Request("http://a.example/", errback=lambda r, f: None)]

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {}

    with pytest.raises(ConfigError, match=r"errback .* is not a method of the spider"):
        await crawl(Foreign(), lambda r: html(""), store_path.with_name("f.db"))

    class Renamed(Spider):
        name = "errbacks"

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {}

    # a store whose queued requests name an errback this spider lacks: an error at start
    async with await SQLiteStore.open(store_path.with_name("e.db"), "errbacks") as store:
        from crawler.store import NewRequest

        await store.add([NewRequest("http://a.example/", "a.example", errback="vanished")])
    with pytest.raises(ConfigError, match="no callback method 'vanished'"):
        await crawl(Renamed(), lambda r: html(""), store_path.with_name("e.db"))


async def test_errbacks_allow_status_and_dont_filter_at_a_local_server(store_path: Path) -> None:
    from aiohttp import web

    hits: Counter[str] = Counter()

    async def page(request: web.Request) -> web.Response:
        hits[request.path] += 1
        if request.path == "/missing":
            return web.Response(status=404, text="<p>not here</p>", content_type="text/html")
        if request.path == "/broken":
            return web.Response(status=500, text="oops")
        if request.path == "/status":
            ready = hits["/status"] >= 3
            return web.Response(text="ready" if ready else "busy", content_type="text/html")
        links = '<a href="/missing">m</a><a href="/broken">b</a><a href="/status">s</a>'
        return web.Response(text=links, content_type="text/html")

    class Local(Spider):
        name = "local"

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            if response.url.endswith("/status"):
                body = response.css_first("body")
                state = body.text() if body else ""
                yield {"status_page": state}
                if state != "ready":
                    yield Request(response.url, dont_filter=True)
                return
            if response.status == 404:
                yield {"allowed": response.status}
                return
            for url in response.links():
                yield Request(url, errback=self.failed, allow_status=[404])

        async def failed(self, request: Request, failure: Failure) -> AsyncIterator[Any]:
            assert failure.response is not None
            yield {"failed": failure.status, "body": failure.response.body.decode()}

    runners: list[web.AppRunner] = []
    ports = await serve(page, ["127.0.0.1"], runners)
    try:
        spider = Local()
        spider.start_urls = [f"http://127.0.0.1:{ports['127.0.0.1']}/"]
        settings = Settings(obey_robots=False, max_retries=1, retry_backoff=0.0)
        await Crawler(spider, settings, store_path=store_path).run()
    finally:
        for runner in runners:
            await runner.cleanup()
    found = await items(store_path)
    assert {"allowed": 404} in found
    assert {"failed": 500, "body": "oops"} in found
    assert [i["status_page"] for i in found if "status_page" in i] == ["busy", "busy", "ready"]
    assert (hits["/broken"], hits["/status"], hits["/missing"]) == (2, 3, 1)


def test_cookies_go_to_a_browser_and_come_back_as_they_were() -> None:
    from crawler.net.cookies import Jars, from_browser, to_browser

    jars = Jars()
    jar = jars.jar("")
    jar.set("sid", "abc", domain="shop.example", path="/")
    jar.set("pref", "dark", domain=".example", path="/account")
    given = to_browser(jar.jar)
    assert {(c["name"], c["domain"], c["path"]) for c in given} == {
        ("sid", "shop.example", "/"),
        ("pref", ".example", "/account"),
    }
    back = Jars().jar("")
    for cookie in given:
        back.jar.set_cookie(from_browser(cookie))

    def fields(cookies: Any) -> set[tuple[Any, ...]]:
        return {
            (
                c.name,
                c.value,
                c.domain,
                c.path,
                c.secure,
                c.expires,
                c.has_nonstandard_attr("HttpOnly"),
            )
            for c in cookies
        }

    assert fields(back.jar) == fields(jar.jar)
