"""The web archive (`-o crawl.warc.gz`; crawl/warc.py): WARC/1.1 request and response records
of every exchange, valid under warcio's checker and indexer, identical payloads as revisits,
rotation by size, exactly once across kill -9; and the same site archived by GNU wget."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from warcio.archiveiterator import ArchiveIterator

from crawler import ConfigError, Crawler, Request, Response, Settings, Spider
from crawler.crawl.warc import WarcArchive
from crawler.records import Exchange
from crawler.tools.demo import DemoShop
from crawler.tools.demo import serve as serve_demo
from tests.sites import GraphSite
from tests.test_cli import SPIDER, acli, run_args, run_until_hits


def records(*paths: Path) -> list[Any]:
    """(type, target URI, status, payload digest, payload) of every record, in order."""
    found = []
    for path in paths:
        with open(path, "rb") as source:
            for record in ArchiveIterator(source):
                headers = record.rec_headers
                found.append(
                    (
                        record.rec_type,
                        headers.get_header("WARC-Target-URI"),
                        record.http_headers.get_statuscode() if record.http_headers else None,
                        headers.get_header("WARC-Payload-Digest"),
                        record.content_stream().read(),
                        headers,
                    )
                )
    return found


def warcio(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "warcio.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


class Shop(Spider):
    name = "shop"
    custom_settings = {"allow_private_networks": True}

    async def parse(self, response: Response) -> Any:
        yield {"url": response.url}
        for url in response.links():
            yield Request(url)


def crawl_shop(base: str, tmp_path: Path, **settings: Any) -> Any:
    spider = Shop()
    spider.start_urls = [base]
    crawler = Crawler(
        spider,
        Settings().merge({**Shop.custom_settings, **settings}),
        store_path=tmp_path / "shop.db",
        output=tmp_path / "shop.warc.gz",
    )
    return asyncio.run(crawler.run())


def test_every_exchange_is_archived_and_valid(tmp_path: Path) -> None:
    with serve_demo(DemoShop(30)) as base:
        stats = crawl_shop(base, tmp_path)
    archive = tmp_path / "shop.warc.gz"
    found = records(archive)
    assert found[0][0] == "warcinfo"
    assert found[0][5].protocol == "WARC/1.1"
    kinds = Counter(kind for kind, *_ in found)
    pages = stats.pages + stats.robots_disallowed
    # robots.txt and each page: a request and a response (or a revisit) each
    assert kinds["request"] == pages + 1
    assert kinds["response"] + kinds["revisit"] == pages + 1
    responses = {
        uri: (status, body) for kind, uri, status, _, body, _ in found if kind == "response"
    }
    assert responses[f"{base}robots.txt"][0] == "200"
    home = responses[base]
    assert home[0] == "200"
    assert b"<html" in home[1].lower()
    checked = warcio("check", "-v", archive)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "digest pass" in checked.stdout
    index = warcio("index", "-f", "warc-type,warc-target-uri,offset", archive)
    assert index.returncode == 0
    lines = [json.loads(line) for line in index.stdout.splitlines()]
    assert len(lines) == len(found)
    # each record is a gzip member of its own: any offset the index gives reads alone
    offset = int(lines[3]["offset"])
    with open(archive, "rb") as source:
        source.seek(offset)
        record = next(iter(ArchiveIterator(source)))
        assert record.rec_headers.get_header("WARC-Target-URI") == lines[3]["warc-target-uri"]


def test_identical_payloads_are_revisits_and_files_rotate(tmp_path: Path) -> None:
    pages = {"/": '<a href="/a">a</a><a href="/b">b</a>', "/a": "same body", "/b": "same body"}
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, html=pages[request.url.path])

    class Site(Spider):
        name = "site"
        start_urls = ["http://site.test/"]

        async def parse(self, response: Response) -> Any:
            for url in response.links():
                yield Request(url)

    settings = (
        Settings()
        .merge({"obey_robots": False, "concurrency": 1, "warc_file": str(tmp_path / "s.warc.gz")})
        .merge({"warc_max_size": 1})
    )  # every record pair in a file of its own
    crawler = Crawler(
        Site(),
        settings,
        store_path=tmp_path / "s.db",
        transport=httpx.MockTransport(handler),
        resolver=lambda host: asyncio.sleep(0, ["93.184.216.34"]),
    )
    asyncio.run(crawler.run())
    files = sorted(tmp_path.glob("s-*.warc.gz"))
    assert [f.name for f in files] == [f"s-{n:05d}.warc.gz" for n in range(3)]
    found = records(*files)
    assert [kind for kind, *_ in found].count("warcinfo") == 3  # one opens each file
    (revisit,) = [r for r in found if r[0] == "revisit"]
    first = next(r for r in found if r[0] == "response" and r[3] == revisit[3])
    assert revisit[5].get_header("WARC-Refers-To-Target-URI") == first[1]
    assert revisit[5].get_header("WARC-Profile").endswith("/revisit/identical-payload-digest")
    assert warcio("check", *files).returncode == 0


def test_an_archive_this_crawl_did_not_write_is_never_written_over(tmp_path: Path) -> None:
    (tmp_path / "shop.warc.gz").write_bytes(b"someone else's")
    with serve_demo(DemoShop(3)) as base, pytest.raises(ConfigError, match="move it away"):
        crawl_shop(base, tmp_path)
    assert (tmp_path / "shop.warc.gz").read_bytes() == b"someone else's"
    with pytest.raises(ConfigError, match="cannot be written again from the store"):
        Crawler(Shop(), output=tmp_path / "x.warc.gz", overwrite_output=True)


async def test_kill_9_then_the_same_command_archives_each_response_once(
    graph: GraphSite, tmp_path: Path
) -> None:
    (tmp_path / "graph.py").write_text(SPIDER)
    args = run_args(graph, "-o", "crawl.warc.gz")
    code, stderr = await run_until_hits(graph, args, tmp_path, 100, signal.SIGKILL)
    assert code == -signal.SIGKILL, stderr
    proc = await acli(*args, cwd=tmp_path)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    archive = tmp_path / "crawl.warc.gz"
    found = records(archive)
    answered = Counter(uri for kind, uri, *_ in found if kind in ("response", "revisit"))
    assert set(answered) == graph.all_urls()
    assert max(answered.values()) == 1  # the pages fetched twice (killed before their
    assert warcio("check", archive).returncode == 0  # commit) were archived once


@pytest.mark.skipif(shutil.which("wget") is None, reason="GNU wget is not installed")
def test_the_archive_holds_what_wget_archives_of_the_same_site(tmp_path: Path) -> None:
    with serve_demo(DemoShop(30)) as base:
        crawl_shop(base, tmp_path, obey_robots=False)
        wget = subprocess.run(
            ["wget", "-q", "-r", "-l", "inf", "--no-parent", "--delete-after",
             "-e", "robots=off", "--warc-file=wget", base],
            cwd=tmp_path,
            timeout=120,
        )  # fmt: skip
    assert wget.returncode in (0, 8)  # 8: a page answered an error (/admin/ is a 404)
    ours = {r[1]: r for r in records(tmp_path / "shop.warc.gz") if r[0] in ("response", "revisit")}
    theirs = {r[1]: r for r in records(tmp_path / "wget.warc.gz") if r[0] == "response"}
    assert set(ours) == set(theirs)  # the same URLs
    same = [uri for uri in ours if ours[uri][3] == theirs[uri][3]]
    # the same payloads, but the login page's (a fresh token in each answer)
    assert sorted(set(ours) - set(same)) == [f"{base}login?next=/account/"]
    assert warcio("check", tmp_path / "wget.warc.gz").returncode == 0


def exchange(url: str, body: bytes) -> Exchange:
    return Exchange(
        "GET", url, [("Host", "x")], None, 200, "OK", "HTTP/1.1",
        [("Content-Type", "text/html"), ("Content-Encoding", "gzip")], body, 1.7e9,
    )  # fmt: skip


def test_a_resumed_archive_is_cut_back_to_its_last_commit(tmp_path: Path) -> None:
    path = tmp_path / "a.warc.gz"
    first = WarcArchive(path)
    first.resume(None)
    committed = first.write([exchange("http://x/1", b"one")])
    first.write([exchange("http://x/2", b"two")])  # written, never committed: a kill -9
    with open(path, "ab") as out:
        out.write(b"\x1f\x8b half a record")
    again = WarcArchive(path)
    again.resume(committed)
    assert path.stat().st_size == json.loads(committed)["length"]
    again.write([exchange("http://x/3", b"one")])  # the digests were read back
    found = records(path)
    assert [(kind, uri) for kind, uri, *_ in found if kind != "request"] == [
        ("warcinfo", None),
        ("response", "http://x/1"),
        ("revisit", "http://x/3"),
    ]
    response = found[1][5]
    assert response.get_header("WARC-Type") == "response"
    headers = dict(r for r in records_http(path)[0])
    assert headers["X-Crawler-Original-Content-Encoding"] == "gzip"  # the body is decoded
    assert headers["Content-Length"] == "3"
    with pytest.raises(ConfigError, match="shorter than"):
        WarcArchive(path).resume(json.dumps({"file": 0, "length": 10**9}))


def records_http(path: Path) -> list[list[tuple[str, str]]]:
    with open(path, "rb") as source:
        return [
            record.http_headers.headers
            for record in ArchiveIterator(source)
            if record.rec_type == "response"
        ]
