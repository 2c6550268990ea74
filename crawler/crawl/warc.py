"""The web archive (`-o crawl.warc.gz`, settings.warc_file): every exchange the crawl's pages
made (each redirect hop, robots.txt, the page) as WARC/1.1 request and response records, each
record a gzip member of its own (warcio, Webrecorder's library: what `warcio check` and
`warcio index` read, and pywb replays).

Exactly once, across kill -9: the writer appends a batch's records, then commits the batch with
a bookmark of where the file ends (its number and length); a run starting cuts off whatever
follows the bookmark (records of pages whose outcome was never committed: those pages are
fetched again, and written again, once). The file always ends on a record boundary once the
crawl has started again; between commits it only grows by whole records. A response whose
payload was archived before (the same digest) is written as a revisit record pointing at the
first, as the identical-payload-digest profile says; the digests are read back from the files
when a crawl resumes. With `warc_max_size`, files are rotated by size: name-00000.warc.gz,
name-00001.warc.gz... (as wget's --warc-max-size).

Bodies are archived decoded (the fetcher decodes Content-Encoding as it reads, within its size
cap): a response's Content-Encoding and Transfer-Encoding headers are kept renamed
(X-Crawler-Original-...) and its Content-Length is the archived body's, so that the record is
true to its own bytes and replays as it was seen.
"""

from __future__ import annotations

import io
import json
import re
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..records import Exchange

#: Headers that say how the bytes went over the wire, not what they are: kept renamed.
_WIRE = {"content-encoding", "transfer-encoding"}
_SUFFIXES = (".warc.gz", ".warc")


def is_warc(path: str | Path) -> bool:
    return str(path).lower().endswith(_SUFFIXES)


class WarcArchive:
    """The WARC files of a crawl at `path` (.warc.gz: gzip per record; .warc: plain), rotated
    past `max_size` bytes (0: one file). `key` names its bookmark in the store."""

    def __init__(self, path: str | Path, *, max_size: int = 0, spider: str = "") -> None:
        try:
            from warcio.warcwriter import WARCWriter
        except ImportError:
            raise ConfigError("WARC output needs warcio: pip install 'crawler[warc]'") from None
        #: Records are made by warcio, uncompressed into a buffer, and each compressed here as
        #: a gzip member of its own at level 6 (warcio's own is level 9: on the benchmark
        #: site's pages 1.24x the time for a file 9% smaller), by one writer (warcio's looks
        #: up the host name each time one is made).
        self._buffer = io.BytesIO()
        self._writer = WARCWriter(self._buffer, gzip=False, warc_version="1.1")
        path = Path(path)
        if not is_warc(path):
            raise ConfigError(f"{path}: a WARC file's name ends in .warc.gz or .warc")
        self.gzip = path.name.lower().endswith(".gz")
        suffix = ".warc.gz" if self.gzip else ".warc"
        self._folder = path.parent
        self._stem = path.name[: -len(suffix)]
        self._suffix = suffix
        self._rotating = max_size > 0
        self._max_size = max_size
        self._spider = spider
        self.key = f"warc:{path.resolve()}"
        self._number = 0
        self._length = 0
        #: Payload digest -> (URI, WARC-Date) of the response that archived it first.
        self._digests: dict[str, tuple[str, str]] = {}

    def file(self, number: int) -> Path:
        """The path of the `number`-th file (the one path, when not rotating)."""
        if not self._rotating:
            return self._folder / f"{self._stem}{self._suffix}"
        return self._folder / f"{self._stem}-{number:05d}{self._suffix}"

    def resume(self, mark: str | None) -> None:
        """Cut the files back to the bookmark the last commit kept, and read back the digests
        archived. None: the crawl starts its archive (the caller keeps `mark()` at once), and
        a file already there is an error: it belongs to another crawl, or to this one started
        over with --fresh, and is never written over."""
        saved = json.loads(mark) if mark else None
        if saved is None:
            first = self.file(0)
            if first.exists() and first.stat().st_size:
                raise ConfigError(
                    f"{first} exists and this crawl has not written it: move it away (a new "
                    "crawl never writes over an archive)"
                )
            self._number, self._length = 0, 0
            return
        self._number, self._length = int(saved["file"]), int(saved["length"])
        current = self.file(self._number)
        size = current.stat().st_size if current.exists() else 0
        if size < self._length:
            raise ConfigError(
                f"{current} is {size} bytes, shorter than the {self._length} this crawl wrote "
                "(moved, truncated or lost to a power cut): its pages' records are gone"
            )
        with open(current, "r+b") as out:
            out.truncate(self._length)  # records of pages never committed
        later = self._number + 1
        while self._rotating and self.file(later).exists():
            self.file(later).unlink()
            later += 1
        for number in range(self._number + 1):
            self._read_digests(self.file(number))

    def _read_digests(self, path: Path) -> None:
        from warcio.archiveiterator import ArchiveIterator

        if not path.exists():
            return
        with open(path, "rb") as source:
            for record in ArchiveIterator(source):
                if record.rec_type != "response":
                    continue
                digest = record.rec_headers.get_header("WARC-Payload-Digest")
                if digest and digest not in self._digests:
                    self._digests[digest] = (
                        record.rec_headers.get_header("WARC-Target-URI"),
                        record.rec_headers.get_header("WARC-Date"),
                    )

    def write(self, exchanges: Sequence[Exchange]) -> str:
        """Append the records of `exchanges` (blocking: run it in a thread); the bookmark to
        commit with them."""
        out: Any = None
        try:
            for exchange in exchanges:
                if self._rotating and self._length >= self._max_size:
                    if out is not None:
                        out.close()
                        out = None
                    self._number, self._length = self._number + 1, 0
                if out is None:
                    out = open(self.file(self._number), "ab")  # noqa: SIM115 (closed below)
                    if out.tell() == 0:
                        self._warcinfo(out)
                self._pair(out, exchange)
                self._length = out.tell()
        finally:
            if out is not None:
                out.close()
        return self.mark()

    def mark(self) -> str:
        """The bookmark of where the archive ends now."""
        return json.dumps({"file": self._number, "length": self._length})

    def _emit(self, out: Any, record: Any) -> None:
        """Write one record to `out` (a gzip member of its own, for .warc.gz)."""
        buffer = self._buffer
        buffer.seek(0)
        buffer.truncate()
        self._writer.write_record(record)
        data = buffer.getvalue()
        if self.gzip:
            compressor = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS + 16)
            data = compressor.compress(data) + compressor.flush()
        out.write(data)

    def _warcinfo(self, out: Any) -> None:
        from .. import __version__  # (the package is whole by the time a record is written)

        writer = self._writer
        info = {
            "software": f"crawler/{__version__} (+https://pypi.org/project/crawler/)",
            "format": "WARC File Format 1.1",
            "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/",
        }
        if self._spider:
            info["isPartOf"] = self._spider
        self._emit(out, writer.create_warcinfo_record(self.file(self._number).name, info))

    def _pair(self, out: Any, exchange: Exchange) -> None:
        from warcio.statusandheaders import StatusAndHeaders

        writer = self._writer
        date = _warc_date(exchange.date)
        parts = urlsplit(exchange.url)
        target = parts.path or "/"
        if parts.query:
            target += f"?{parts.query}"
        request = writer.create_warc_record(
            exchange.url,
            "request",
            payload=io.BytesIO(exchange.request_body or b""),
            length=len(exchange.request_body or b""),
            warc_headers_dict={"WARC-Date": date},
            http_headers=StatusAndHeaders(
                f"{exchange.method} {target} HTTP/1.1",
                list(exchange.request_headers),
                is_http_request=True,
            ),
        )
        headers = _archived_headers(exchange.headers, len(exchange.body))
        status = StatusAndHeaders(
            f"{exchange.status} {exchange.reason}".strip(),
            headers,
            protocol=_protocol(exchange.http_version),
        )
        response = writer.create_warc_record(
            exchange.url,
            "response",
            payload=io.BytesIO(exchange.body),
            length=len(exchange.body),
            warc_headers_dict={"WARC-Date": date},
            http_headers=status,
        )
        digest = response.rec_headers.get_header("WARC-Payload-Digest")
        first = self._digests.get(digest) if exchange.body else None
        if first is not None:
            response = writer.create_revisit_record(
                exchange.url,
                digest,
                first[0],
                first[1],
                http_headers=StatusAndHeaders(
                    f"{exchange.status} {exchange.reason}".strip(),
                    headers,
                    protocol=_protocol(exchange.http_version),
                ),
                warc_headers_dict={"WARC-Date": date},
            )
        elif exchange.body:
            self._digests[digest] = (exchange.url, date)
        # as warcio's write_request_response_pair: the response, then its request, which
        # names it as concurrent
        request.rec_headers.add_header(
            "WARC-Concurrent-To", response.rec_headers.get_header("WARC-Record-ID")
        )
        self._emit(out, response)
        self._emit(out, request)


def _warc_date(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _protocol(version: str) -> str:
    return version if re.fullmatch(r"HTTP/\d(\.\d)?", version) else "HTTP/1.1"


def _archived_headers(headers: Sequence[tuple[str, str]], length: int) -> list[tuple[str, str]]:
    """The response's headers as archived with its decoded body: the wire's encodings kept
    renamed, Content-Length the body's."""
    kept = []
    for name, value in headers:
        lower = name.lower()
        if lower in _WIRE:
            kept.append((f"X-Crawler-Original-{name}", value))
        elif lower != "content-length":
            kept.append((name, value))
    kept.append(("Content-Length", str(length)))
    return kept
