"""What users extract (crawler/extract.py): main content as Markdown and text, metadata,
structured data and objects in scripts, on local pages built to look like real templates
(tests/data/pages); and `python -m crawler crawl URL`, the crawl without a spider."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from crawler import Request
from crawler.models import Response
from tests.helpers import crawler_cli

PAGES = Path(__file__).parent / "data" / "pages"


def page(name: str) -> Response:
    url = f"https://site.example/{name}"
    return Response(
        url=url,
        status=200,
        headers=httpx.Headers({"content-type": "text/html; charset=utf-8"}),
        body=(PAGES / f"{name}.html").read_bytes(),
        request=Request(url),
    )


BOILERPLATE = {
    "article": ["cookies", "Subscribe now", "Most read", "Advertisement", "rights reserved"],
    "docs": ["Send feedback", "Edit on GitHub", "Queues"],
}


def test_an_articles_markdown_keeps_the_body_and_leaves_the_boilerplate() -> None:
    markdown = page("article").markdown()
    for kept in (
        "# Tidal Power Finds a Second Wind",
        "## How the new blade works",
        "For a decade, the turbines anchored off the coast of Brittany",
        "- Maintenance visits cut from four a year to one",
        "| Old tidal turbines | 310 euros |",
        "[laboratory's full report](https://lab.example/report.pdf)",
    ):
        assert kept in markdown
    for left_out in BOILERPLATE["article"]:
        assert left_out not in markdown


def test_a_docs_pages_markdown_keeps_its_code_block() -> None:
    markdown = page("docs").markdown()
    assert "```" in markdown
    assert 'queue.publish({"to": "ada@example.com"})' in markdown
    assert "`max_attempts`" in markdown
    assert "1. Base delay: 0.5 seconds" in markdown
    for left_out in BOILERPLATE["docs"]:
        assert left_out not in markdown


def test_main_text_is_the_same_content_without_markup() -> None:
    text = page("article").main_text()
    assert "The trailing edge is made of a composite" in text
    assert "#" not in text
    assert "](" not in text
    assert "Subscribe now" not in text
    assert "<p>" in page("article").main_html()


def test_metadata() -> None:
    assert page("article").metadata() == {
        "title": "Tidal Power Finds a Second Wind",
        "description": "Engineers in Brittany revive tidal turbines with a new blade design.",
        "language": "en",
        "author": "Maren Holt",
        "published": "2026-03-14",
        "canonical_url": "https://coastal.example/energy/tidal-power-second-wind",
        "site_name": "coastal.example",
    }
    product = page("product").metadata()
    assert (product["language"], product["canonical_url"]) == (
        "de",
        "https://shop.example/p/trail-runner-x2",
    )


def test_structured_data_as_plain_dicts() -> None:
    data = page("product").structured_data()
    assert set(data) == {"json-ld", "microdata", "opengraph", "rdfa"}
    (ld,) = data["json-ld"]
    assert (ld["@type"], ld["offers"]["price"], ld["brand"]["name"]) == (
        "Product",
        "129.95",
        "Bergsport",
    )
    (micro,) = data["microdata"]
    assert micro["@type"] == "Product"
    assert micro["aggregateRating"]["ratingValue"] == "4.6"
    assert micro["offers"]["priceCurrency"] == "EUR"
    assert data["opengraph"][0]["og:title"] == "Trail Runner X2"
    assert json.loads(json.dumps(data)) == data  # plain data all the way down


def test_js_objects_in_scripts() -> None:
    app = page("app")
    state = app.js_object("window.__INITIAL_STATE__")
    assert state["listings"][1] == {
        "id": 102,
        "title": "Loft near the river",
        "rent": 1890,
        "tags": [],
    }  # unquoted keys, single quotes, a trailing comma: read as a browser reads them
    assert state["filters"]["city"] == "Leipzig"
    assert app.js_object("config") == {"api": "/api/v2", "debug": False}
    assert app.js_object() == state  # the first object of the first script with one
    assert app.js_object("window.__NOTHING__") is None
    assert page("article").js_object() is None


def test_extraction_is_made_once_per_response() -> None:
    article = page("article")
    assert article.markdown() is article.markdown()


@pytest.fixture
async def site() -> AsyncIterator[str]:
    """The template pages on one local host, an index linking them (and another host)."""
    names = ["article", "product", "docs", "app"]
    links = "".join(f'<a href="/{name}">{name}</a>' for name in names)
    index = (
        f"<html><head><title>Index</title></head><body><h1>Index</h1>{links}"
        '<a href="http://127.0.0.2:1/elsewhere">another host</a></body></html>'
    )

    async def serve(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "":
            return web.Response(text=index, content_type="text/html")
        if name.startswith("guide"):  # a section: its pages link into it and out of it
            body = (
                '<a href="/guide/one">one</a><a href="/guide/two.html">2</a><a href="/docs">x</a>'
            )
            return web.Response(text=f"<html><body>{body}</body></html>", content_type="text/html")
        if name not in names:
            raise web.HTTPNotFound()
        return web.Response(body=(PAGES / f"{name}.html").read_bytes(), content_type="text/html")

    app = web.Application()
    app.router.add_get("/{name:.*}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/"
    await runner.cleanup()


async def test_crawl_a_site_to_markdown_without_a_spider(site: str, tmp_path: Path) -> None:
    code, _, err = await crawler_cli(
        "crawl", site, "--depth", "1", "-o", "site.jsonl", cwd=tmp_path
    )
    assert code == 0, err
    records = {
        r["url"]: r for r in map(json.loads, (tmp_path / "site.jsonl").read_text().splitlines())
    }
    assert set(records) == {site, *(site + name for name in ("article", "product", "docs", "app"))}
    article = records[site + "article"]
    assert article["title"] == "Tidal Power Finds a Second Wind"
    assert article["metadata"]["author"] == "Maren Holt"
    assert "## How the new blade works" in article["markdown"]
    assert "Subscribe now" not in article["markdown"]

    # the same command again: the crawl is done, nothing is written twice
    code, _, err = await crawler_cli(
        "crawl", site, "--depth", "1", "-o", "site.jsonl", cwd=tmp_path
    )
    assert code == 0, err
    assert len((tmp_path / "site.jsonl").read_text().splitlines()) == len(records)


async def test_crawl_formats_and_depth(site: str, tmp_path: Path) -> None:
    args = ("crawl", site + "docs", "--depth", "0", "--format", "text", "-o", "docs.jsonl")
    code, _, err = await crawler_cli(*args, cwd=tmp_path)
    assert code == 0, err
    (record,) = map(json.loads, (tmp_path / "docs.jsonl").read_text().splitlines())
    assert set(record) == {"url", "title", "metadata", "duplicate_of", "text"}
    assert "Relay retries a failed delivery" in record["text"]
    args = ("crawl", site + "guide", "--under", "-o", "guide.jsonl", "--store", "g.db")
    code, _, err = await crawler_cli(*args, cwd=tmp_path)
    assert code == 0, err
    lines = (tmp_path / "guide.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["url"] for line in lines) == [
        site + "guide",
        site + "guide/one",
        site + "guide/two.html",
    ]  # not /docs: it is outside the start URL's path
    code, _, err = await crawler_cli("crawl", site, "--depth", "-1", "-o", "x.jsonl", cwd=tmp_path)
    assert code == 2
    assert "--depth must be 0 or more" in err
