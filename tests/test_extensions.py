"""Pipelines, hooks, spider state, counters and lifecycle, on the engine over mock transports."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pydantic
import pytest

from crawler import ConfigError, DropItem, Request, Response, Retry, Spider
from crawler.store import SQLiteStore
from tests.conftest import rows
from tests.helpers import crawl, html, stored_counts, stored_failures, stored_items


async def items_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(data) for data in await stored_items(path)]


async def counters(path: Path) -> dict[str, int]:
    store = await SQLiteStore.open_readonly(path)
    try:
        return await store.counters()
    finally:
        await store.close()


def products(request: httpx.Request) -> httpx.Response:
    """/ lists /p/0../p/5; product i has price i (so product 0 is invalid) and product 4
    repeats product 3's sku."""
    path = request.url.path
    if path == "/":
        return html("".join(f'<a href="/p/{i}">p</a>' for i in range(6)))
    i = int(path.rsplit("/", 1)[1])
    sku = 3 if i == 4 else i
    return html(f'<h1> Product {i} </h1><b class="price">{i}</b><i>{sku}</i>')


class Product(pydantic.BaseModel):
    name: str
    price: float = pydantic.Field(gt=0)
    sku: int


class Clean:
    def process_item(self, item: dict[str, Any], spider: Spider) -> dict[str, Any]:
        item["name"] = item["name"].strip()
        return item


class Validate:
    def process_item(self, item: dict[str, Any], spider: Spider) -> Product:
        return Product.model_validate(item)


class Dedup:
    async def process_item(self, item: Product, spider: Spider) -> Product:
        seen = spider.state.setdefault("skus", {})
        if str(item.sku) in seen:
            raise DropItem("duplicate sku")
        seen[str(item.sku)] = 1
        spider.stats.inc("unique")
        return item


class Shop(Spider):
    name = "shop"
    start_urls = ["http://a.com/"]
    pipelines = [Clean(), Validate(), Dedup()]

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        if response.url.endswith("/"):
            for url in response.links():
                yield Request(url)
            return
        self.stats.inc("product pages")
        yield {
            "name": response.css_first("h1").text(),
            "price": response.css_first(".price").text(),
            "sku": response.css_first("i").text(),
        }


async def test_pipelines_clean_validate_and_dedup(store_path: Path) -> None:
    stats = await crawl(Shop(), products, store_path, concurrency=1)
    items = await items_of(store_path)
    assert sorted(i["sku"] for i in items) == [1, 2, 3, 5]
    assert all(i["name"] == f"Product {i['sku']}" for i in items)
    assert all(isinstance(i["price"], float) for i in items)
    assert stats.items == 4
    found = await counters(store_path)
    assert found["dropped:duplicate sku"] == 1
    assert found["dropped:Product.price: Input should be greater than 0"] == 1
    assert found["stat:unique"] == 4
    assert found["stat:product pages"] == 6
    state = rows(store_path, "SELECT value FROM meta WHERE key = 'mark:spider-state'")
    assert json.loads(str(state[0][0])) == {"skus": {"1": 1, "2": 1, "3": 1, "5": 1}}


async def test_state_is_restored_and_dedups_across_runs(store_path: Path) -> None:
    class Seen(Shop):
        name = "seen"
        start_urls = ["http://a.com/"]

    await crawl(Seen(), products, store_path, max_pages=3, concurrency=1)
    first = len(await items_of(store_path))
    spider = Seen()
    opened_with: list[dict[str, Any]] = []

    async def opened() -> None:
        opened_with.append(json.loads(json.dumps(spider.state)))

    spider.opened = opened  # type: ignore[method-assign]
    await crawl(spider, products, store_path, concurrency=1)
    assert opened_with
    assert len(opened_with[0]["skus"]) == first
    assert sorted(i["sku"] for i in await items_of(store_path)) == [1, 2, 3, 5]


@dataclasses.dataclass
class DataItem:
    kind: str
    tags: tuple[str, ...] = ()


@attrs.define
class AttrsItem:
    kind: str
    n: int = 0


class Kinds(Spider):
    name = "kinds"
    start_urls = ["http://a.com/"]

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"kind": "dict"}
        yield DataItem("dataclass", ("a", "b"))
        yield AttrsItem("attrs", 2)
        yield Product(name="pydantic", price=1.5, sku=7)


async def test_items_may_be_dicts_dataclasses_attrs_or_pydantic(store_path: Path) -> None:
    await crawl(Kinds(), lambda r: html(""), store_path)
    assert await items_of(store_path) == [
        {"kind": "dict"},
        {"kind": "dataclass", "tags": ["a", "b"]},
        {"kind": "attrs", "n": 2},
        {"name": "pydantic", "price": 1.5, "sku": 7},
    ]


async def test_a_pipeline_error_fails_the_page_and_keeps_nothing_of_it(store_path: Path) -> None:
    class Broken:
        def process_item(self, item: dict[str, Any], spider: Spider) -> dict[str, Any]:
            if item["sku"] == "2":
                raise KeyError("boom")
            return item

    class Failing(Shop):
        name = "failing"
        pipelines = [Broken()]

    await crawl(Failing(), products, store_path)
    assert sorted(i["sku"] for i in await items_of(store_path)) == ["0", "1", "3", "3", "5"]
    failed = [(f["url"], f["error"], f["message"]) for f in await stored_failures(store_path)]
    assert failed == [
        ("http://a.com/p/2", "spider", "Broken.process_item() raised KeyError: 'boom'")
    ]


class Opened:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def open(self, spider: Spider) -> None:
        self.calls.append("open")

    async def close(self, spider: Spider) -> None:
        self.calls.append("close")

    def process_item(self, item: Any, spider: Spider) -> Any:
        self.calls.append("item")
        return item


async def test_lifecycle_opened_closed_and_pipeline_open_close(store_path: Path) -> None:
    pipeline = Opened()
    seen: list[str] = []

    class Life(Spider):
        name = "life"
        start_urls = ["http://a.com/"]
        pipelines = [pipeline]

        async def opened(self) -> None:
            seen.append("opened")
            self.stats.inc("opened")

        async def closed(self, reason: str) -> None:
            seen.append(f"closed {reason}")
            self.state["closed"] = reason
            self.stats.inc("closed")

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            seen.append("parse")
            yield {"a": 1}

    await crawl(Life(), lambda r: html(""), store_path)
    assert seen == ["opened", "parse", "closed complete"]
    assert pipeline.calls == ["open", "item", "close"]
    assert (await counters(store_path)) == {"stat:opened": 1, "stat:closed": 1}
    state = rows(store_path, "SELECT value FROM meta WHERE key = 'mark:spider-state'")
    assert json.loads(str(state[0][0])) == {"closed": "complete"}


class NoProcess:
    def open(self, spider: Spider) -> None: ...


@pytest.mark.parametrize(
    ("attribute", "value", "settings", "message"),
    [
        ("pipelines", [Clean], {}, "Clean is a class: list instances, e.g. Clean()"),
        ("pipelines", [NoProcess()], {}, "NoProcess has no process_item(item, spider) method"),
        ("pipelines", Clean(), {}, "pipelines must be a list"),
        ("hooks", [NoProcess()], {}, "NoProcess has neither process_request"),
        ("sinks", [Clean()], {}, "Clean is not a Sink instance"),
        (None, None, {"pipelines": "nowhere.at.all:Thing"}, "cannot import 'nowhere.at.all'"),
        (None, None, {"pipelines": "tests.test_extensions:Missing"}, "has no 'Missing'"),
        (None, None, {"hooks": "tests.test_extensions:Clean"}, "Clean has neither"),
        (None, None, {"pipelines": "not a path"}, "takes 'module:Class' names"),
    ],
)
async def test_a_misdeclared_extension_is_a_one_line_error_at_start(
    store_path: Path, attribute: str | None, value: Any, settings: dict[str, str], message: str
) -> None:
    calls: list[str] = []

    class Bad(Spider):
        name = "bad"
        start_urls = ["http://a.com/"]

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {}

    if attribute is not None:
        setattr(Bad, attribute, value)

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return html("")

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        await crawl(Bad(), handler, store_path, **settings)
    assert "\n" not in str(e.value)
    assert calls == []
    assert not store_path.exists()


async def test_pipelines_from_the_setting_run_after_the_spiders(store_path: Path) -> None:
    class Tag:
        def process_item(self, item: dict[str, Any], spider: Spider) -> dict[str, Any]:
            return {**item, "order": [*item.get("order", []), "spider"]}

    class Tagged(Spider):
        name = "tagged"
        start_urls = ["http://a.com/"]
        pipelines = [Tag()]

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"n": 1}

    await crawl(Tagged(), lambda r: html(""), store_path, pipelines="tests.test_extensions:Stamp")
    assert await items_of(store_path) == [{"n": 1, "order": ["spider", "setting"]}]


class Stamp:
    def process_item(self, item: dict[str, Any], spider: Spider) -> dict[str, Any]:
        return {**item, "order": [*item["order"], "setting"]}


class Auth:
    def process_request(self, request: Request, spider: Spider) -> Request | None:
        if "private" in request.url:
            return None
        request.headers = {**(request.headers or {}), "Authorization": "Bearer t0k3n"}
        return request


class BanCheck:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def process_response(self, request: Request, response: Response, spider: Spider) -> None:
        self.seen.append(response.url)
        if "captcha" in response.text:
            spider.stats.inc("bans")
            raise Retry("ban page")


async def test_hooks_add_headers_drop_requests_and_retry_ban_pages(store_path: Path) -> None:
    served: Counter[str] = Counter()
    headers: list[str | None] = []
    ban = BanCheck()

    class Guarded(Spider):
        name = "guarded"
        start_urls = ["http://a.com/"]
        hooks = [Auth(), ban]

        def process_request(self, request: Request) -> Request:
            request.headers = {**(request.headers or {}), "X-Spider": "yes"}
            return request

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}
            for url in response.links():
                yield Request(url)

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        served[path] += 1
        headers.append(request.headers.get("authorization"))
        assert request.headers.get("x-spider") == "yes"
        if path == "/":
            return html('<a href="/flaky">f</a><a href="/private">p</a><a href="/banned">b</a>')
        if path == "/flaky" and served[path] == 1:
            return html("please solve this captcha")
        if path == "/banned":
            return html("captcha")
        return html("ok")

    await crawl(Guarded(), handler, store_path, max_retries=2)
    assert served == {"/": 1, "/flaky": 2, "/banned": 3}  # /private never went out
    assert set(headers) == {"Bearer t0k3n"}
    table = {
        str(url): (state, error, message)
        for url, state, error, message in rows(
            store_path, "SELECT url, state, error, message FROM requests"
        )
    }
    assert table["http://a.com/private"] == (3, "ignored", "dropped by process_request")
    assert table["http://a.com/banned"] == (3, "retry", "ban page")
    assert table["http://a.com/flaky"][:2] == (2, None)
    assert ban.seen.count("http://a.com/flaky") == 2  # retries go through the hooks too
    assert (await counters(store_path))["stat:bans"] == 4
    assert sorted(i["url"] for i in await items_of(store_path)) == [
        "http://a.com/",
        "http://a.com/flaky",
    ]


async def test_a_hook_may_not_move_a_request_to_another_host(store_path: Path) -> None:
    class Elsewhere(Spider):
        name = "elsewhere"
        start_urls = ["http://a.com/"]

        def process_request(self, request: Request, spider: Spider) -> Request:
            return Request("http://b.com/")

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {}

    await crawl(Elsewhere(), lambda r: html(""), store_path)
    (failed,) = await stored_failures(store_path)
    assert (await stored_counts(store_path)).done == 0
    assert failed["error"] == "spider"
    assert "within its host only" in failed["message"]


async def test_counters_of_a_failed_page_are_kept_with_its_failure(store_path: Path) -> None:
    class Flaky(Spider):
        name = "flaky"
        start_urls = ["http://a.com/"]

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            self.stats.inc("parsed")
            raise ValueError("broken page")
            yield {}

    await crawl(Flaky(), lambda r: html(""), store_path)
    # the page ran once and was committed once, as failed (a killed page counts nothing:
    # see the kill -9 test)
    assert await counters(store_path) == {"stat:parsed": 1}


async def test_a_state_that_is_not_json_stops_the_crawl_with_a_clear_error(
    store_path: Path,
) -> None:
    class Unsaveable(Spider):
        name = "unsaveable"
        start_urls = ["http://a.com/"]

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            self.state["when"] = object()
            yield {}

    with pytest.raises(ConfigError, match=r"self\.state must be JSON-serializable"):
        await crawl(Unsaveable(), lambda r: html(""), store_path)
    assert (await stored_counts(store_path)).items == 0


async def test_a_redirect_to_a_page_in_flight_does_not_fool_a_dedup_pipeline(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/a redirects to /b while /b itself is being fetched: the store keeps /b's own items,
    not the redirect's, so the pipelines must not see the redirect's (a dedup pipeline would
    take /b's own for duplicates and nothing of /b would be stored)."""
    import asyncio

    redirect_committed = asyncio.Event()
    real_commit = SQLiteStore.commit

    async def commit(self: SQLiteStore, outcomes: Any, *args: Any, **kwargs: Any) -> Any:
        committed = await real_commit(self, outcomes, *args, **kwargs)
        if any(o.request.url.endswith("/a") for o in outcomes):
            redirect_committed.set()
        return committed

    monkeypatch.setattr(SQLiteStore, "commit", commit)
    direct_b = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal direct_b
        path = request.url.path
        if path == "/":
            return html('<a href="/b">b</a><a href="/a">a</a>')
        if path == "/a":
            return httpx.Response(302, headers={"Location": "/b"})
        direct_b += 1
        if direct_b == 1:  # /b's own fetch: held until the redirect to it is committed
            await redirect_committed.wait()
        return html("<h1> Product 7 </h1><b class='price'>7</b><i>7</i>")

    class Redirected(Shop):
        name = "redirected"

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            if response.url.endswith("/"):
                for url in response.links():
                    yield Request(url)
                return
            yield {
                "name": response.css_first("h1").text(),
                "price": response.css_first(".price").text(),
                "sku": response.css_first("i").text(),
            }

    await crawl(Redirected(), handler, store_path, concurrency=2)  # type: ignore[arg-type]
    assert direct_b == 2
    assert [i["sku"] for i in await items_of(store_path)] == [7]
    assert "dropped:duplicate sku" not in await counters(store_path)


async def test_a_run_that_leaves_the_state_as_it_found_it_never_writes_it(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a shared store, a process idle since it restored the state must not write that old
    state over the one another process committed since."""

    class Stateful(Spider):
        name = "stateful"
        start_urls = ["http://a.com/"]

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            self.state["seen"] = self.state.get("seen", 0) + 1
            yield {"n": 1}

    await crawl(Stateful(), lambda r: html(""), store_path)
    written: list[Any] = []
    real_commit = SQLiteStore.commit

    async def commit(self: SQLiteStore, *args: Any, **kwargs: Any) -> Any:
        written.append(kwargs.get("state"))
        return await real_commit(self, *args, **kwargs)

    monkeypatch.setattr(SQLiteStore, "commit", commit)

    class Idle(Stateful):
        start_urls = ["http://a.com/other"]

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"n": 2}

    resumed = Idle()
    await crawl(resumed, lambda r: html(""), store_path)
    assert resumed.state == {"seen": 1}
    assert written
    assert set(written) == {None}


async def test_a_hook_that_breaks_a_request_fails_that_page_only(store_path: Path) -> None:
    class Broken(Spider):
        name = "broken"
        start_urls = ["http://a.com/"]

        def process_request(self, request: Request) -> Request:
            if request.url.endswith("/bad"):
                request.headers = {"X-Bad": "line\nbreak"}
            return request

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"url": response.url}
            for url in response.links():
                yield Request(url)

    await crawl(Broken(), lambda r: html('<a href="/bad">b</a><a href="/ok">o</a>'), store_path)
    assert sorted(i["url"] for i in await items_of(store_path)) == [
        "http://a.com/",
        "http://a.com/ok",
    ]
    (failed,) = await stored_failures(store_path)
    assert "process_request raised ValueError" in failed["message"]
    assert "X-Bad" in failed["message"]


async def test_hooks_named_by_the_setting_run_before_the_spiders_own(store_path: Path) -> None:
    seen: list[str | None] = []

    class Own(Spider):
        name = "own"
        start_urls = ["http://a.com/"]

        def process_request(self, request: Request) -> Request:
            seen.append(request.header("authorization"))
            return request

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {}

    headers: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        headers.append(request.headers.get("authorization"))
        return html("")

    await crawl(Own(), handler, store_path, hooks="tests.test_extensions:Auth")
    assert seen == ["Bearer t0k3n"]  # the setting's Auth ran first
    assert headers == ["Bearer t0k3n"]
