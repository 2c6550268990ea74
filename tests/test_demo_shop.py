"""The demo shop's login, account and JSON API, crawled by the example spiders through the CLI:
a form with a CSRF token, a session cookie, two sessions at once, a paged JSON API, and a
logged-in crawl killed twice with kill -9: one login at the server, every item exactly once."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.tools.demo import USERS, DemoShop, serve
from tests.conftest import rows
from tests.test_cli import acli, cli

SPIDERS = Path(__file__).parent.parent / "spiders"


@pytest.fixture
def shop() -> Iterator[tuple[DemoShop, str]]:
    demo = DemoShop(books=60, orders=45)
    with serve(demo) as base:
        yield demo, base


def lines(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_login_form_wants_its_csrf_token() -> None:
    demo = DemoShop(books=5, orders=5)
    status, headers, body = demo.handle("GET", "/login", {}, b"")
    token = headers["Set-Cookie"].split(";")[0].split("=")[1]
    assert status == 200
    assert f'value="{token}"'.encode() in body
    form = f"csrf_token={token}&username=reader&password=secret".encode()
    assert demo.handle("POST", "/login", {}, form)[0] == 403  # no cookie: refused
    forged = {"cookie": "csrftoken=other"}
    assert demo.handle("POST", "/login", forged, form)[0] == 403
    status, headers, _ = demo.handle("POST", "/login", {"cookie": f"csrftoken={token}"}, form)
    assert (status, headers["Location"]) == (302, "/account/orders?page=1")
    assert demo.logins == {"reader": 1}
    assert demo.handle("GET", "/account/orders", {}, b"")[0] == 302  # no session: to the login


def test_the_account_spider_logs_in_and_reads_every_order(
    shop: tuple[DemoShop, str], tmp_path: Path
) -> None:
    demo, base = shop
    args = ["-a", f"start_urls={base}login", "-o", "orders.jsonl", "-q"]
    result = cli("run", str(SPIDERS / "account.py"), *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    orders = lines(tmp_path / "orders.jsonl")
    assert [o["order"] for o in orders] == [o["order"] for o in demo.orders["reader"]]
    assert orders[0] == demo.orders["reader"][0]
    assert demo.logins == {"reader": 1}
    assert demo.hits["POST /login"] == 1
    jars = rows(tmp_path / "account.db", "SELECT name, cookies FROM sessions")
    assert [name for name, _ in jars] == [""]
    assert "sessionid" in str(jars[0][1])  # the login is in the store


def test_a_wrong_password_fails_the_page_and_says_why(
    shop: tuple[DemoShop, str], tmp_path: Path
) -> None:
    _, base = shop
    args = ["-a", f"start_urls={base}login", "-a", "password=nope", "-q"]
    result = cli("run", str(SPIDERS / "account.py"), *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    failed = rows(tmp_path / "account.db", "SELECT error, message FROM requests WHERE state = 3")
    assert failed == [("spider", failed[0][1])]
    assert "not signed in" in str(failed[0][1])


TWO_USERS = """
from crawler import FormRequest, Request, Spider

class Both(Spider):
    name = "both"
    start_urls = []
    base = ""

    def start_requests(self):
        for user in ("alice", "bob"):
            yield Request(self.base + "login", session=user, meta={"user": user})

    async def parse(self, response):
        user = response.request.meta["user"]
        passwords = {"alice": "wonderland", "bob": "builder"}
        yield FormRequest.from_response(
            response, formdata={"username": user, "password": passwords[user]},
            callback=self.orders, meta={"user": user},
        )

    async def orders(self, response):
        who = response.css_first("p.user").text().split()[-1]
        for row in response.xpath("//table[@id='orders']/tr[td]"):
            yield {"session": response.request.session, "user": who,
                   "order": row.xpath("td[1]/text()").get()}
        next_page = response.xpath("//li[@class='next']/a/@href").get()
        if next_page:
            yield response.follow(next_page, callback=self.orders)
"""


def test_two_sessions_log_in_as_two_users_at_once(
    shop: tuple[DemoShop, str], tmp_path: Path
) -> None:
    demo, base = shop
    (tmp_path / "both.py").write_text(TWO_USERS)
    result = cli("run", "both.py", "-a", f"base={base}", "-o", "orders.jsonl", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    orders = lines(tmp_path / "orders.jsonl")
    for user in ("alice", "bob"):
        mine = [o for o in orders if o["session"] == user]
        assert {o["user"] for o in mine} == {user}  # each session saw its own account
        assert sorted(o["order"] for o in mine) == sorted(o["order"] for o in demo.orders[user])
    assert demo.logins == {"alice": 1, "bob": 1}


def test_the_search_api_is_paged_through(shop: tuple[DemoShop, str], tmp_path: Path) -> None:
    demo, base = shop
    args = ["-a", f"api={base}api/search", "-a", "query=red", "-o", "books.jsonl", "-q"]
    result = cli("run", str(SPIDERS / "search_api.py"), *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    books = lines(tmp_path / "books.jsonl")
    expected = [b["title"] for b in demo.books if "red" in b["title"].lower()]
    assert [b["title"] for b in books] == expected
    assert len(expected) > 10  # more than one page
    assert demo.hits["POST /api/search"] == -(-len(expected) // 10)  # each page once


@pytest.mark.slow
async def test_kill_9_twice_during_a_logged_in_crawl_one_login_every_item_once(
    tmp_path: Path,
) -> None:
    demo = DemoShop(books=20, orders=200)
    loop = asyncio.get_running_loop()
    pages = 0
    reached = asyncio.Event()
    stop_at = [4]

    def on_hit(what: str) -> None:
        nonlocal pages
        if what == "GET /account/orders":
            pages += 1
            if pages >= stop_at[0]:
                loop.call_soon_threadsafe(reached.set)

    demo.on_hit = on_hit
    with serve(demo) as base:
        args = [
            "run",
            str(SPIDERS / "account.py"),
            "-a",
            f"start_urls={base}login",
            "-o",
            "orders.jsonl",
            "-q",
        ]
        for kill_at in (4, 11):
            stop_at[0] = kill_at
            reached.clear()
            process = await acli(*args, cwd=tmp_path)
            waiter = asyncio.create_task(reached.wait())
            ended = asyncio.create_task(process.wait())
            await asyncio.wait({waiter, ended}, return_when=asyncio.FIRST_COMPLETED)
            assert reached.is_set(), "the crawl ended before it could be killed"
            process.send_signal(signal.SIGKILL)
            await process.communicate()
            waiter.cancel()
            assert process.returncode == -signal.SIGKILL
        demo.on_hit = None
        process = await acli(*args, cwd=tmp_path)
        _, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
    orders = [o["order"] for o in lines(tmp_path / "orders.jsonl")]
    assert orders == [o["order"] for o in demo.orders["reader"]]  # every item, once, in order
    assert demo.logins == {"reader": 1}  # still signed in after each kill
    assert demo.hits["POST /login"] == 1
    assert set(USERS) >= set(demo.logins)
