"""Files that items link to (a `file_urls` field, Scrapy's convention), stored whole in the
files store (settings.files_store: a folder, or any fsspec URL such as s3://bucket/prefix).

A file streams to a partial file as it arrives, hashed on the way (never held whole in memory),
and is moved to its place, `full/<SHA-1 of its URL><extension>`, only once complete. The item's
`files` field then lists, for each of its URLs, {url, path, checksum (SHA-256), size,
content_type}, or {url, error} for one that could not be stored (too large, a 404, a
timeout...). The records are committed with the page's outcome: a file is recorded as stored
only when the page that named it is, so a crawl killed mid-download fetches that page, and the
file, again on resume; a file stored by an earlier page (of this run, or recorded in the store)
is not fetched twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import mimetypes
import os
import posixpath
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

from ..errors import ConfigError, CrawlerError, FetchError
from ..net.fetcher import Fetcher
from ..records import FileRecord
from ..stats import FILES
from ..stats import bump as add_counter

log = logging.getLogger("crawler")

_EXTENSION = re.compile(r"^\.[a-z0-9]{1,8}$")
#: Where partial files are written, under the files store.
PARTIAL = ".partial"


class _Partial(Protocol):
    async def write(self, chunk: bytes) -> None: ...
    async def publish(self, path: str) -> None: ...
    async def discard(self) -> None: ...


class LocalFiles:
    """A files store in a local folder: partial files in `.partial/`, moved into place with
    one rename (a file is complete, or not there)."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def sweep(self, older_than: float) -> None:
        """Remove partial files left by crashed downloads (not written to for `older_than`
        seconds: no download still running takes that long)."""
        folder = self.root / PARTIAL
        if not folder.is_dir():
            return
        limit = time.time() - older_than
        for leftover in folder.iterdir():
            with contextlib.suppress(OSError):
                if leftover.stat().st_mtime < limit:
                    leftover.unlink()

    def partial(self) -> _Partial:
        folder = self.root / PARTIAL
        folder.mkdir(parents=True, exist_ok=True)
        return _LocalPartial(self.root, folder / uuid.uuid4().hex)


class _LocalPartial:
    def __init__(self, root: Path, path: Path) -> None:
        self._root = root
        self._path = path
        self._file = open(path, "wb")  # noqa: SIM115 (closed by publish or discard)

    async def write(self, chunk: bytes) -> None:
        self._file.write(chunk)  # (to the page cache: no wait worth a thread)

    async def publish(self, path: str) -> None:
        self._file.close()
        final = self._root / path
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._path, final)

    async def discard(self) -> None:
        self._file.close()
        self._path.unlink(missing_ok=True)


class FsspecFiles:
    """A files store on any fsspec filesystem (s3://, gs://, memory://...): writes run in a
    thread (they may wait on the network); a partial file is moved into place once complete."""

    def __init__(self, url: str) -> None:
        try:
            import fsspec
        except ImportError:
            raise ConfigError(
                f"files_store {url!r} needs fsspec: pip install 'crawler[files]'"
            ) from None
        try:
            self._fs, root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"files_store {url!r}: {exc}") from None
        self.root = root.rstrip("/")

    def sweep(self, older_than: float) -> None:
        return None  # (object stores expire partial uploads by their own rules)

    def partial(self) -> _Partial:
        return _FsspecPartial(self._fs, self.root, f"{self.root}/{PARTIAL}/{uuid.uuid4().hex}")


class _FsspecPartial:
    def __init__(self, fs: Any, root: str, path: str) -> None:
        self._fs = fs
        self._root = root
        self._path = path
        self._file: Any = None

    async def write(self, chunk: bytes) -> None:
        if self._file is None:
            self._file = await asyncio.to_thread(self._fs.open, self._path, "wb")
        await asyncio.to_thread(self._file.write, chunk)

    async def publish(self, path: str) -> None:
        if self._file is None:  # an empty file
            self._file = await asyncio.to_thread(self._fs.open, self._path, "wb")
        await asyncio.to_thread(self._file.close)
        await asyncio.to_thread(self._fs.mv, self._path, f"{self._root}/{path}")

    async def discard(self) -> None:
        if self._file is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._file.close)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._fs.rm, self._path)


def files_store(location: str) -> LocalFiles | FsspecFiles:
    """The files store the setting names: a local folder (a path, or file://), or fsspec's."""
    scheme = urlsplit(location).scheme
    if len(scheme) > 1 and scheme != "file":  # (a Windows drive letter is no scheme)
        return FsspecFiles(location)
    return LocalFiles(location.removeprefix("file://"))


def file_path(url: str, content_type: str | None) -> str:
    """Where a file goes in the store: full/<SHA-1 of its URL>, with its URL's extension (or
    its content type's)."""
    name = hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()
    extension = posixpath.splitext(urlsplit(url).path)[1].lower()
    if not _EXTENSION.match(extension):
        media = (content_type or "").partition(";")[0].strip().lower()
        extension = (mimetypes.guess_extension(media) or "") if media else ""
    return f"full/{name}{extension}"


class Files:
    """Stores the files the items of a page name (`fill`), each once. `known(urls)`: the files
    stored already (the store's records); `allowed(url)`: robots.txt's word, if it is obeyed;
    `charge(url)`: takes a token from the file's host (its pages wait their turn after it)."""

    def __init__(
        self,
        fetcher: Fetcher,
        target: LocalFiles | FsspecFiles,
        *,
        known: Callable[[Sequence[str]], Awaitable[dict[str, FileRecord]]],
        max_size: int,
        time_limit: float,
        allowed: Callable[[str], Awaitable[bool]] | None = None,
        charge: Callable[[str], None] | None = None,
    ) -> None:
        self._fetcher = fetcher
        self._target = target
        self._known = known
        self._max_size = max_size
        self._time_limit = time_limit
        self._allowed = allowed
        self._charge = charge
        #: Files stored in this run (or found in the store), by URL.
        self._stored: dict[str, FileRecord] = {}
        #: Downloads under way, by URL: a second page naming the file waits for the first.
        self._running: dict[str, asyncio.Future[FileRecord]] = {}
        target.sweep(older_than=time_limit)

    async def fill(self, items: Sequence[Any], base: str) -> list[FileRecord]:
        """Store the files the items name (`file_urls`, relative ones against `base`), and set
        each item's `files`; returns the records of every file they name that is stored."""
        named: list[tuple[Any, list[str]]] = []
        for item in items:
            urls = _file_urls(item)
            if urls is not None:
                named.append((item, [urljoin(base, url) for url in urls]))
        if not named:
            return []
        wanted = list(dict.fromkeys(url for _, urls in named for url in urls))
        missing = [url for url in wanted if url not in self._stored]
        if missing:
            for url, record in (await self._known(missing)).items():
                self._stored[url] = record
                add_counter(FILES + "known")
        results = await asyncio.gather(*(self._store(url) for url in wanted))
        done = dict(zip(wanted, results, strict=True))
        for item, urls in named:
            _set_files(item, [_entry(url, done[url]) for url in urls])
        return [result for result in done.values() if isinstance(result, FileRecord)]

    async def _store(self, url: str) -> FileRecord | str:
        """The file's record, or why it could not be stored."""
        record = self._stored.get(url)
        if record is not None:
            return record
        running = self._running.get(url)
        if running is None:
            # a task of its own: a page cancelled (a stop) does not cut short another's wait
            running = self._running[url] = asyncio.ensure_future(self._download(url))
            running.add_done_callback(self._finished(url))
        try:
            return await asyncio.shield(running)
        except (CrawlerError, OSError) as exc:
            why = (
                exc.message
                if isinstance(exc, FetchError)
                else str(exc)
                if isinstance(exc, CrawlerError)
                else f"{type(exc).__name__}: {exc}"
            )
            log.warning("file %s not stored: %s", url, why)
            add_counter(FILES + "failed")
            return why

    def _finished(self, url: str) -> Callable[[asyncio.Future[FileRecord]], None]:
        def finished(future: asyncio.Future[FileRecord]) -> None:
            self._running.pop(url, None)
            if not future.cancelled():
                future.exception()  # (each waiter got it: not an unretrieved error)

        return finished

    async def _download(self, url: str) -> FileRecord:
        if self._allowed is not None and not await self._allowed(url):
            raise CrawlerError(f"{url} is disallowed by robots.txt")
        if self._charge is not None:
            self._charge(url)
        partial = self._target.partial()
        hasher = hashlib.sha256()
        size = 0

        async def into(chunk: bytes) -> None:
            nonlocal size
            hasher.update(chunk)
            size += len(chunk)
            await partial.write(chunk)

        try:
            fetched = await self._fetcher.fetch(
                url, max_size=self._max_size, into=into, time_limit=self._time_limit
            )
            content_type = fetched.headers.get("content-type")
            path = file_path(url, content_type)
            await partial.publish(path)
        except BaseException:
            await partial.discard()
            raise
        record = FileRecord(url, path, hasher.hexdigest(), size, content_type)
        self._stored[url] = record
        add_counter(FILES + "stored")
        log.debug("stored %s (%d bytes) as %s", url, size, path)
        return record


def _entry(url: str, result: FileRecord | str) -> dict[str, Any]:
    """An item's `files` entry: the record, or the URL and why it is not stored."""
    return result.as_dict() if isinstance(result, FileRecord) else {"url": url, "error": result}


def _file_urls(item: Any) -> list[str] | None:
    """The item's `file_urls` (a list of strings), if it has any."""
    urls = item.get("file_urls") if isinstance(item, dict) else getattr(item, "file_urls", None)
    if urls is None:
        return None
    if isinstance(urls, str) or not all(isinstance(url, str) for url in urls):
        raise CrawlerError(f"an item's file_urls must be a list of URLs, got {urls!r}")
    return list(urls)


def _set_files(item: Any, files: list[dict[str, Any]]) -> None:
    if isinstance(item, dict):
        item["files"] = files
        return
    try:
        item.files = files
    except (AttributeError, TypeError, ValueError) as exc:
        raise CrawlerError(
            f"{type(item).__name__} has file_urls but no settable files field: {exc}"
        ) from None
