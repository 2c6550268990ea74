"""The example spiders, tested offline: a crawl of the local demo shop is recorded once (the HTTP
cache is the recording), the shop goes away, and the callbacks are replayed from the recording
with crawler.testing.Replay. A project commits its recording directory and keeps only the
replaying part of these tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crawler.spider import load_spider_class
from crawler.testing import NotRecorded, Replay

SPIDERS = Path(__file__).parent.parent / "spiders"


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A crawl of the demo shop (25 books), recorded; the shop is gone afterwards."""
    from crawler.demo import DemoShop, serve

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
