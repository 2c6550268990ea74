"""Content-Encoding decoders whose output is bounded, so a small compressed bomb can never inflate
in memory: each call returns at most about `limit` bytes. Pure: no I/O.

httpx decodes a whole network chunk at once, so a 64 KiB gzip chunk can become 64 MiB before a
size check sees it; the fetcher reads raw bytes and decodes them here instead.
"""

from __future__ import annotations

import zlib
from typing import Protocol

try:  # brotli >= 1.2 bounds its output; older releases cannot be used safely.
    import brotli

    _BROTLI = hasattr(brotli.Decompressor(), "can_accept_more_data")
except ImportError:  # pragma: no cover - depends on the environment
    _BROTLI = False

try:  # zstd (browsers ask for it: the impersonate backend does), bounded like zlib
    from compression import zstd  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    try:
        from backports import zstd  # type: ignore[import-not-found,no-redef,unused-ignore]
    except ImportError:  # pragma: no cover - depends on the environment
        zstd = None

#: The Accept-Encoding header matching the decoders available here (the default backend's; zstd
#: is decoded when a server sends it, and only the impersonate backend, as a browser, asks).
ACCEPT_ENCODING = "gzip, deflate, br" if _BROTLI else "gzip, deflate"


class DecodingError(Exception):
    """Unsupported encoding or corrupt data."""


class Decoder(Protocol):
    def decode(self, data: bytes, limit: int) -> bytes:
        """Decode `data`; returns more than `limit` bytes only when the output would exceed it."""

    def flush(self, limit: int) -> bytes:
        """Whatever output is left once the input has ended."""


class _Identity:
    def decode(self, data: bytes, limit: int) -> bytes:
        return data

    def flush(self, limit: int) -> bytes:
        return b""


class _Zlib:
    def __init__(self, wbits: int) -> None:
        self._wbits = wbits
        self._obj = zlib.decompressobj(wbits)
        self._first = True

    def decode(self, data: bytes, limit: int) -> bytes:
        try:
            out = self._obj.decompress(data, limit + 1)
        except zlib.error as exc:
            if self._first and self._wbits == zlib.MAX_WBITS:
                # "deflate" is often sent raw, without the zlib wrapper it should have
                self._wbits = -zlib.MAX_WBITS
                self._obj = zlib.decompressobj(self._wbits)
                return self.decode(data, limit)
            raise DecodingError(str(exc)) from None
        self._first = False
        return out  # longer than `limit` iff the output was cut short: the body is too large

    def flush(self, limit: int) -> bytes:
        try:
            return self._obj.flush(limit + 1) if limit >= 0 else b""
        except zlib.error as exc:
            raise DecodingError(str(exc)) from None


class _Brotli:
    def __init__(self) -> None:
        self._obj = brotli.Decompressor()

    def decode(self, data: bytes, limit: int) -> bytes:
        try:
            out: bytes = self._obj.process(data, output_buffer_limit=limit + 1)
            while len(out) <= limit and not self._obj.can_accept_more_data():
                out += self._obj.process(b"", output_buffer_limit=limit + 1 - len(out))
        except brotli.error as exc:
            raise DecodingError(str(exc)) from None
        return out

    def flush(self, limit: int) -> bytes:
        return b""


class _Zstd:
    def __init__(self) -> None:
        self._obj = zstd.ZstdDecompressor()

    def decode(self, data: bytes, limit: int) -> bytes:
        out = b""
        try:
            while True:
                out += bytes(self._obj.decompress(data, limit + 1 - len(out)))
                data = b""
                if len(out) > limit:
                    return out  # cut short: the body is too large
                if not self._obj.eof:
                    if self._obj.needs_input:
                        return out
                    continue
                data = bytes(self._obj.unused_data)  # frames one after another
                if not data:
                    return out
                self._obj = zstd.ZstdDecompressor()
        except zstd.ZstdError as exc:
            raise DecodingError(str(exc)) from None

    def flush(self, limit: int) -> bytes:
        return b""


def decoder_for(content_encoding: str | None) -> Decoder:
    """The decoder for a Content-Encoding header value; DecodingError when unsupported."""
    coding = (content_encoding or "").strip().lower()
    if coding in ("", "identity"):
        return _Identity()
    if coding in ("gzip", "x-gzip"):
        return _Zlib(16 + zlib.MAX_WBITS)
    if coding == "deflate":
        return _Zlib(zlib.MAX_WBITS)
    if coding == "br" and _BROTLI:
        return _Brotli()
    if coding == "zstd" and zstd is not None:
        return _Zstd()
    raise DecodingError(f"unsupported Content-Encoding {content_encoding!r}")
