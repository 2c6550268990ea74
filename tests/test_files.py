"""Files items name (`file_urls`, settings.files_store; crawler/page/files.py): streamed to the
files store while hashed, recorded with the page's outcome, each stored once; what cannot be
stored says why in the item; a crawl killed mid-download records nothing half-done and the same
command finishes it. End to end, against a local server that streams the files."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import sys
import textwrap
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from crawler import Crawler, Settings, Spider
from crawler.page.files import file_path
from crawler.store import open_readonly
from tests.helpers import stored_items, stored_summary
from tests.sites import serve

CHUNK = 64 * 1024


def content(name: str, size: int) -> bytes:
    """A file's bytes: its name's digest, repeated (the same every time it is served)."""
    block = hashlib.sha256(name.encode()).digest() * (CHUNK // 32)
    return (block * (size // CHUNK + 1))[:size]


class FileSite:
    """Pages /p/N whose items name files /f/NAME?size=N; a file stalls halfway while `stall`
    is set (after setting `halfway`)."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.halfway = asyncio.Event()
        self.stall: asyncio.Event | None = None
        self.pages: dict[str, list[str]] = {}
        self.base = ""
        self._runners: list[web.AppRunner] = []

    async def start(self) -> None:
        ports = await serve(self.handle, ["127.0.0.1"], self._runners)
        self.base = f"http://127.0.0.1:{ports['127.0.0.1']}"

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] += 1
        if path.startswith("/p/"):
            links = "".join(f'<a href="{p}">x</a>' for p in self.pages.get(path, []))
            return web.Response(text=f"<html><body>{links}</body></html>", content_type="text/html")
        if not path.startswith("/f/") or path.endswith("missing.bin"):
            return web.Response(status=404)
        size = int(request.query.get("size", "1000"))
        body = content(path, size)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        for start in range(0, size, CHUNK):
            if start >= size // 2 and self.stall is not None:
                self.halfway.set()
                await self.stall.wait()
            await response.write(body[start : start + CHUNK])
        await response.write_eof()
        return response


@pytest.fixture
async def site() -> AsyncIterator[FileSite]:
    served = FileSite()
    await served.start()
    yield served
    await served.stop()


SPIDER = textwrap.dedent(
    """
    from crawler import Request, Spider

    class Downloads(Spider):
        name = "downloads"
        start_urls = [{start!r}]
        custom_settings = {{"obey_robots": False, "files_store": "files"}}

        async def parse(self, response):
            names = {names!r}.get(response.url.split(":", 2)[2].partition("/")[2], [])
            yield {{"page": response.url, "file_urls": names}}
            for url in response.links():
                yield Request(url)
    """
)


class Downloads(Spider):
    name = "downloads"
    #: Page path -> the file URLs its item names (relative ones against the page).
    names: dict[str, list[str]] = {}

    async def parse(self, response: Any) -> Any:
        path = "/" + response.url.split("/", 3)[3]
        yield {"page": path, "file_urls": self.names.get(path, [])}
        for url in response.links():
            yield response.follow(url)


async def crawl(site: FileSite, store: Path, **settings: Any) -> Any:
    spider = Downloads()
    spider.start_urls = [f"{site.base}/p/0"]
    options = {"obey_robots": False, "concurrency": 4, **settings}
    return await Crawler(spider, Settings().merge(options), store_path=store).run()


def items_by_page(rows: list[str]) -> dict[str, dict[str, Any]]:
    return {item["page"]: item for item in map(json.loads, rows)}


async def test_files_are_streamed_hashed_and_stored_once(site: FileSite, tmp_path: Path) -> None:
    big = "/f/big.iso?size=3000000"  # 3 MB, in 64 KiB chunks
    site.pages = {"/p/0": ["/p/1", "/p/2"]}
    Downloads.names = {
        "/p/0": [big, "/f/doc.pdf?size=10"],
        "/p/1": [big],  # named again: stored once
        "/p/2": ["/f/missing.bin", "/f/huge.bin?size=5000000"],
    }
    store = tmp_path / "s.db"
    await crawl(site, store, files_store=str(tmp_path / "files"), files_max_size=4_000_000)
    items = items_by_page(await stored_items(store))
    (big_entry, pdf) = items["/p/0"]["files"]
    assert items["/p/1"]["files"] == [big_entry]
    url = f"{site.base}{big}"
    expected = content("/f/big.iso", 3_000_000)
    assert big_entry == {
        "url": url,
        "path": file_path(url, "application/octet-stream"),
        "checksum": hashlib.sha256(expected).hexdigest(),
        "size": 3_000_000,
        "content_type": "application/octet-stream",
    }
    assert big_entry["path"].startswith("full/")
    assert big_entry["path"].endswith(".iso")
    assert (tmp_path / "files" / big_entry["path"]).read_bytes() == expected
    assert pdf["path"].endswith(".pdf")
    assert pdf["size"] == 10
    assert site.hits["/f/big.iso"] == 1
    missing, huge = items["/p/2"]["files"]
    assert missing == {"url": f"{site.base}/f/missing.bin", "error": "HTTP 404"}
    assert "exceeds 4000000 bytes" in huge["error"]
    assert list((tmp_path / "files" / ".partial").iterdir()) == []  # the huge one's removed
    summary = await stored_summary(store)
    assert summary.counters["files:stored"] == 2
    assert summary.counters["files:failed"] == 2


async def test_a_file_recorded_in_the_store_is_not_fetched_again(
    site: FileSite, tmp_path: Path
) -> None:
    store, files = tmp_path / "s.db", str(tmp_path / "files")
    Downloads.names = {"/p/0": ["/f/a.bin?size=100"]}
    await crawl(site, store, files_store=files)
    Downloads.names = {"/p/0": ["/f/a.bin?size=100"], "/p/9": ["/f/a.bin?size=100"]}
    spider = Downloads()
    spider.start_urls = [f"{site.base}/p/9"]  # a new page of the same crawl names it again
    await Crawler(
        spider, Settings().merge({"obey_robots": False, "files_store": files}), store_path=store
    ).run()
    assert site.hits["/f/a.bin"] == 1
    items = items_by_page(await stored_items(store))
    assert items["/p/9"]["files"] == items["/p/0"]["files"]


async def test_any_fsspec_filesystem_takes_the_files(site: FileSite, tmp_path: Path) -> None:
    import fsspec

    Downloads.names = {"/p/0": ["/f/m.bin?size=200000"]}
    await crawl(site, tmp_path / "s.db", files_store="memory://crawl-files")
    (entry,) = items_by_page(await stored_items(tmp_path / "s.db"))["/p/0"]["files"]
    fs = fsspec.filesystem("memory")
    assert fs.cat(f"/crawl-files/{entry['path']}") == content("/f/m.bin", 200000)
    assert fs.find("/crawl-files/.partial") == []  # moved into place


async def test_bad_file_urls_fail_the_page_with_why(site: FileSite, tmp_path: Path) -> None:
    Downloads.names = {"/p/0": "/f/a.bin"}  # type: ignore[dict-item]  (a string, not a list)
    await crawl(site, tmp_path / "s.db", files_store=str(tmp_path / "files"))
    store = await open_readonly(tmp_path / "s.db")
    try:
        (failure,) = [f async for f in store.failures()]
    finally:
        await store.close()
    assert failure["error"] == "spider"
    assert "file_urls must be a list of URLs" in failure["message"]


async def test_kill_9_mid_download_records_nothing_and_the_rerun_finishes(
    site: FileSite, tmp_path: Path
) -> None:
    name = "/f/video.mp4?size=4000000"
    (tmp_path / "dl.py").write_text(
        SPIDER.format(start=f"{site.base}/p/0", names={"p/0": [name], "p/1": [name]})
    )
    site.pages = {"/p/0": ["/p/1"]}
    site.stall = asyncio.Event()  # the file stops halfway until the crawler is killed
    args = ("-m", "crawler", "run", "dl.py", "-o", "items.jsonl", "-q")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=tmp_path, stderr=asyncio.subprocess.PIPE
    )
    await asyncio.wait_for(site.halfway.wait(), 60)
    partial = list((tmp_path / "files" / ".partial").iterdir())
    assert len(partial) == 1  # under way (how much of it reached the disk: the server's pace)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    site.stall.set()
    store = await open_readonly(tmp_path / "downloads.db")
    try:
        assert await store.files_known([f"{site.base}{name}"]) == {}
    finally:
        await store.close()
    assert not (tmp_path / "files" / "full").exists()  # nothing complete, nothing in place
    site.stall = None
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=tmp_path, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    lines = (tmp_path / "items.jsonl").read_text().splitlines()
    assert len(lines) == 2  # each page's item once
    (entry,) = json.loads(lines[0])["files"]
    stored = (tmp_path / "files" / entry["path"]).read_bytes()
    assert stored == content("/f/video.mp4", 4_000_000)
    assert entry["checksum"] == hashlib.sha256(stored).hexdigest()
    assert site.hits["/f/video.mp4"] == 2  # the killed download, then the whole one
