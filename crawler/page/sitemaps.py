"""Sitemaps (sitemaps.org): urlsets, sitemap indexes, gzip files, and robots.txt `Sitemap:` lines.
Pure: parses bytes, no I/O.

XML is parsed by the standard library (expat >= 2.4 limits entity expansion, and no external
entity is ever loaded); gzip is inflated in bounded steps, never past `limit` bytes.
"""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from ..net.decoding import DecodingError, decoder_for

#: The largest sitemap sitemaps.org allows, uncompressed.
MAX_SITEMAP_BYTES = 50 * 1024 * 1024
#: The meta key under which `Spider.parse_sitemap` passes an entry's lastmod (epoch seconds)
#: to its request: a revisit spares a page fetched since then (see stored.to_stored).
SITEMAP_LASTMOD = "sitemap_lastmod"


@dataclass(frozen=True, slots=True)
class SitemapEntry:
    """One `<url>` of a sitemap. `lastmod` is None when absent or unparsable."""

    url: str
    lastmod: datetime.datetime | None = None
    changefreq: str | None = None
    priority: float | None = None


class SitemapError(ValueError):
    """The body is not a sitemap, a sitemap index or a robots.txt."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _lastmod(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        value = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def _inflate(body: bytes, limit: int) -> bytes:
    decoder = decoder_for("gzip")
    try:
        out = decoder.decode(body, limit)
        if len(out) <= limit:
            out += decoder.flush(limit - len(out))
    except DecodingError as exc:
        raise SitemapError(f"bad gzip data: {exc}") from None
    if len(out) > limit:
        raise SitemapError(f"sitemap larger than {limit} bytes once inflated")
    return out


def parse(body: bytes, *, robots: bool, limit: int) -> tuple[list[str], list[SitemapEntry]]:
    """(sitemap URLs, page entries) found in a body: a robots.txt's `Sitemap:` lines when
    `robots`, else a sitemap index's `<sitemap><loc>`s or a urlset's `<url>`s (gzip or not)."""
    if robots:
        found = []
        for line in body.decode("utf-8", errors="replace").splitlines():
            name, _, value = line.partition(":")
            if name.strip().lower() == "sitemap" and value.strip():
                found.append(value.strip())
        return found, []
    if body[:2] == b"\x1f\x8b":
        body = _inflate(body, limit)
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise SitemapError(f"not XML: {exc}") from None
    kind = _local(root.tag)
    if kind == "sitemapindex":
        locs = (
            child.text.strip()
            for sitemap in root
            for child in sitemap
            if _local(child.tag) == "loc" and child.text
        )
        return [loc for loc in locs if loc], []
    if kind != "urlset":
        raise SitemapError(f"the root element is <{kind}>, not <urlset> or <sitemapindex>")
    entries = []
    for url in root:
        fields = {_local(child.tag): (child.text or "").strip() for child in url}
        if not fields.get("loc"):
            continue
        try:
            priority = float(fields["priority"]) if fields.get("priority") else None
        except ValueError:
            priority = None
        entries.append(
            SitemapEntry(
                url=fields["loc"],
                lastmod=_lastmod(fields.get("lastmod")),
                changefreq=fields.get("changefreq") or None,
                priority=priority,
            )
        )
    return [], entries
