"""The example spiders, tested offline: a crawl of the local demo shop is recorded once (the HTTP
cache is the recording), the shop goes away, and the callbacks are replayed from the recording
with crawler.testing.Replay. A project commits its recording directory and keeps only the
replaying part of these tests."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crawler import Crawler, Request, Response, Settings, Spider
from crawler.spider import load_spider_class
from crawler.testing import NotRecorded, Replay
from tests.helpers import stored_items

SPIDERS = Path(__file__).parent.parent / "spiders"


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A crawl of the demo shop (25 books), recorded; the shop is gone afterwards."""
    from crawler.tools.demo import DemoShop, serve

    folder = tmp_path_factory.mktemp("recording")
    with serve(DemoShop(25)) as base:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "crawler",
                "run",
                str(SPIDERS / "books.py"),
                "-a",
                f"start_urls={base}",
                "-s",
                "http_cache=true",
                "-s",
                f"http_cache_dir={folder}",
                "--store",
                str(folder / "books.db"),
                "-q",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, result.stderr
    return folder, base


async def test_a_catalogue_page_yields_its_books_and_the_next_page(
    recording: tuple[Path, str],
) -> None:
    folder, base = recording
    books = load_spider_class(SPIDERS / "books.py")
    async with Replay(books(), folder) as replay:
        page = await replay.parse(base)  # the shop's front page lists the first books
    assert page.response.cached
    assert page.items == []
    book_pages = [r for r in page.requests if r.callback_name == "parse_book"]
    assert len(book_pages) == 20
    assert [r.url for r in page.requests if r.callback_name == "parse"] == [
        f"{base}catalogue/page-2.html"
    ]


async def test_a_book_page_yields_one_complete_book(recording: tuple[Path, str]) -> None:
    folder, base = recording
    books = load_spider_class(SPIDERS / "books.py")
    async with Replay(books(), folder) as replay:
        page = await replay.parse(f"{base}catalogue/book-3_3/index.html", callback="parse_book")
    (book,) = page.items
    assert book["title"].startswith("Book 3")
    assert book["price"].startswith("£")
    assert book["rating"] in range(1, 6)
    assert len(book["upc"]) == 16
    assert page.requests == []


async def test_the_shop_spider_replays_through_its_pipelines(recording: tuple[Path, str]) -> None:
    folder, base = recording
    shop = load_spider_class(SPIDERS / "shop.py")
    async with Replay(shop(), folder, pipelines=True) as replay:
        page = await replay.parse(f"{base}catalogue/book-3_3/index.html", callback="parse_book")
    (book,) = page.items
    assert isinstance(book["price"], float)  # cleaned and validated as a Book


async def test_a_page_not_recorded_is_a_clear_error(recording: tuple[Path, str]) -> None:
    folder, base = recording
    books = load_spider_class(SPIDERS / "books.py")
    async with Replay(books(), folder) as replay:
        with pytest.raises(NotRecorded, match="was not recorded"):
            await replay.parse(f"{base}catalogue/no-such-page.html")
    with pytest.raises(NotRecorded, match="no recording in"):
        Replay(books(), folder / "elsewhere")


def _readme_block(marker: str) -> str:
    """The README's fenced code block that contains `marker`."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for block in re.findall(r"```[a-z]*\n(.*?)```", readme, flags=re.DOTALL):
        if marker in block:
            return str(block)
    raise AssertionError(f"no code block with {marker!r} in the README")


@pytest.mark.slow
def test_the_readme_recipe_works_as_copied(tmp_path: Path) -> None:
    """A user copies the README's recording command and example test into a project of their
    own (no pytest settings): the recording commits with git and the example passes."""
    from crawler.tools.demo import DemoShop, serve

    project = tmp_path / "project"
    (project / "spiders").mkdir(parents=True)
    shutil.copy(SPIDERS / "books.py", project / "spiders" / "books.py")
    commands = _readme_block("http_cache_dir=tests/recordings/books")
    (record,) = [line for line in commands.splitlines() if line.startswith("python -m crawler run")]
    with serve(DemoShop(100)) as base:  # what `demo --serve` serves
        port = base.rsplit(":", 1)[1].strip("/")
        argv = shlex.split(record.replace("8000", port))
        result = subprocess.run(
            [sys.executable, *argv[1:], "-q"], cwd=project, capture_output=True, text=True
        )
    assert result.returncode == 0, result.stderr
    recording = project / "tests" / "recordings" / "books"
    assert (recording / "http.db").is_file()

    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(["git", "add", "tests/recordings/books"], cwd=project, check=True)
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=project, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "tests/recordings/books/http.db" in tracked

    example = _readme_block("# tests/test_books.py")
    (project / "tests" / "test_books.py").write_text(example.replace("8000", port))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_books.py"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


async def test_a_default_cache_is_kept_out_of_git_and_a_recording_is_not(tmp_path: Path) -> None:
    from crawler.net.fetcher import Fetcher

    def fetcher(folder: Path, recording: bool) -> Fetcher:
        transport = httpx.MockTransport(
            lambda r: httpx.Response(200, stream=httpx.ByteStream(b"hi"))
        )
        return Fetcher(
            user_agent="t",
            timeout=5,
            max_size=1000,
            max_redirects=3,
            max_connections=1,
            transport=transport,
            cache_dir=folder,
            cache_recording=recording,
        )

    for folder, recording in ((tmp_path / "rec", True), (tmp_path / ".crawler-cache", False)):
        async with fetcher(folder, recording) as f:
            await f.fetch("http://a.com/")
        ignored = (folder / ".gitignore").read_text().splitlines()
        assert ("*" in ignored) is not recording
    hishels = tmp_path / "old"  # a recording made before: hishel's .gitignore ignored it all
    hishels.mkdir()
    (hishels / ".gitignore").write_text("# Automatically created by Hishel\n*")
    async with fetcher(hishels, True) as f:
        await f.fetch("http://a.com/")
    assert "*" not in (hishels / ".gitignore").read_text().splitlines()
    (hishels / ".gitignore").write_text("mine\n")  # the user's own is left alone
    async with fetcher(hishels, True) as f:
        await f.fetch("http://a.com/")
    assert (hishels / ".gitignore").read_text() == "mine\n"


PAGES = {
    "/": '<a href="/a">a</a> <a href="/a#again">a</a> <a href="http://elsewhere.test/x">x</a>'
    ' <a href="/noindex">n</a> <a href="/nofollow">f</a>',
    "/a": '<a href="/deep">deep</a> <a href="/">home</a>',
    "/deep": '<a href="/deeper">deeper</a>',  # at the depth limit: not followed
    "/deeper": "",
    "/noindex": '<meta name="robots" content="noindex"><a href="/after-noindex">next</a>',
    "/after-noindex": "",
    "/nofollow": '<meta name="robots" content="nofollow"><a href="/hidden">hidden</a>',
    "/hidden": "",
}


class Follower(Spider):
    """An item per page, every link followed."""

    name = "follower"
    custom_settings = {"max_depth": 2}

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url}
        for url in response.links():
            yield Request(url)


async def test_replay_keeps_what_the_crawl_keeps(tmp_path: Path) -> None:
    """The same spider on the same site, crawled live (and recorded), then replayed page by
    page: each page's items and requests are what the crawl kept (noindex, nofollow, scope,
    depth and duplicates alike)."""
    from aiohttp import web

    from tests.conftest import rows
    from tests.sites import serve

    async def page(request: web.Request) -> web.Response:
        if request.path not in PAGES:
            return web.Response(status=404)
        return web.Response(
            text=f"<html><body>{PAGES[request.path]}</body></html>", content_type="text/html"
        )

    runners: list[web.AppRunner] = []
    port = (await serve(page, ["127.0.0.1"], runners))["127.0.0.1"]
    base = f"http://127.0.0.1:{port}"
    folder = tmp_path / "recording"
    settings = Settings(obey_robots=False, http_cache=True, http_cache_dir=str(folder))
    try:
        await Crawler(
            Follower(start_urls=f"{base}/"),
            settings.merge(Follower.custom_settings),
            store_path=tmp_path / "crawl.db",
        ).run()
    finally:
        for runner in runners:
            await runner.cleanup()
    crawled = dict(rows(tmp_path / "crawl.db", "SELECT url, depth FROM requests WHERE state = 2"))
    kept_items = {json.loads(text)["url"] for text in await stored_items(tmp_path / "crawl.db")}
    assert f"{base}/hidden" not in crawled  # the crawl's own rules, as a reference
    assert f"{base}/deeper" not in crawled
    assert f"{base}/noindex" in crawled
    assert f"{base}/noindex" not in kept_items

    replayed_items: set[str] = set()
    replayed_requests: set[str] = set()
    async with Replay(Follower(), folder) as replay:
        for url, depth in crawled.items():
            result = await replay.parse(Request(str(url), depth=int(str(depth))))
            replayed_items.update(item["url"] for item in result.items)
            replayed_requests.update(r.url for r in result.requests)
            if url == f"{base}/nofollow":
                assert result.requests == []
            if url == f"{base}/noindex":
                assert result.items == []
    assert replayed_items == kept_items
    assert replayed_requests | {f"{base}/"} == set(crawled)
