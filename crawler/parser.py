"""HTML parsing: content types, character decoding and link extraction. Pure: no I/O.

Decoding follows the order browsers use, simplified: the charset of the Content-Type header,
then a `<meta charset>` in the first 1024 bytes, then strict UTF-8, then statistical detection.
Undecodable bytes become U+FFFD; decoding never raises.
"""

from __future__ import annotations

import codecs
import re

from selectolax.lexbor import LexborHTMLParser

from .urls import Base, resolve

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_META_CHARSET = re.compile(
    rb"""<meta[^>]+?charset\s*=\s*["']?\s*([a-zA-Z0-9_\-:.]+)""", re.IGNORECASE
)
# WHATWG: these labels mean windows-1252, which is a superset of what servers really send.
_WHATWG_ALIASES = {
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
}
_LINK_SELECTOR = "a[href], area[href]"
_DIRECTIVES = frozenset({"noindex", "nofollow", "none"})


def robots_directives(tree: LexborHTMLParser | None, header: str | None) -> frozenset[str]:
    """The noindex/nofollow directives of a page, from `<meta name="robots">` (when there is
    an HTML tree) and an X-Robots-Tag header ("none" means both)."""
    found: set[str] = set()
    sources = [header or ""]
    if tree is not None:
        sources += [n.attributes.get("content") or "" for n in tree.css('meta[name="robots" i]')]
    for source in sources:
        for word in source.replace(",", " ").lower().split():
            if word in _DIRECTIVES:
                found.add(word)
    if "none" in found:
        found |= {"noindex", "nofollow"}
    return frozenset(found)


def media_type(content_type: str | None) -> str:
    """The lowercased media type of a Content-Type header ("" when absent)."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    """Whether a Content-Type header names JSON (application/json, text/json, or a +json
    type such as application/ld+json)."""
    kind = media_type(content_type)
    return kind in ("application/json", "text/json") or kind.endswith("+json")


def is_html(content_type: str | None) -> bool:
    """Whether a Content-Type header names HTML or XHTML. A missing header counts as HTML,
    as browsers sniff such bodies as HTML."""
    kind = media_type(content_type)
    return kind in _HTML_TYPES or kind == ""


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    label = _WHATWG_ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def header_charset(content_type: str | None) -> str | None:
    """The Python codec named by a Content-Type header's charset parameter, if it is known."""
    if not content_type:
        return None
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return _codec(value)
    return None


def meta_charset(body: bytes) -> str | None:
    """The Python codec named by a `<meta charset>` or `http-equiv` tag in the first 1024 bytes."""
    match = _META_CHARSET.search(body, 0, 1024)
    return _codec(match.group(1).decode("ascii")) if match else None


def decode(body: bytes, content_type: str | None) -> str:
    """The body as text (see the module docstring for the order of evidence)."""
    codec = header_charset(content_type) or meta_charset(body)
    if codec:
        return body.decode(codec, errors="replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes  # rarely needed; ~20 ms of startup otherwise

    best = from_bytes(body[:65536]).best()
    return body.decode(best.encoding if best else "utf-8", errors="replace")


def parse_html(text: str) -> LexborHTMLParser:
    """A selectolax (Lexbor) tree; malformed markup is repaired, never rejected."""
    return LexborHTMLParser(text)


def base_url(tree: LexborHTMLParser, page_url: str) -> str:
    """The URL relative links resolve against: the first `<base href>` (resolved against the
    page's URL) when it gives an http(s) URL, else the page's."""
    base = tree.css_first("base[href]")
    href = base.attributes.get("href") if base is not None else None
    return (resolve(page_url, href) or page_url) if href is not None else page_url


def extract_links(tree: LexborHTMLParser, page_url: str, *, nofollow: bool = False) -> list[str]:
    """The URLs a browser requests for the page's `<a href>` and `<area href>` links (see
    `crawler.urls.resolve`): resolved against the base URL, normalized by the URL Standard,
    fragments removed, http(s) only, first occurrence kept, in document order. With
    `nofollow`, links marked rel="nofollow" are left out."""
    base = Base(base_url(tree, page_url))
    seen: dict[str, None] = {}
    for node in tree.css(_LINK_SELECTOR):
        attributes = node.attributes
        href = attributes.get("href")
        if href is None:
            continue
        if nofollow and "nofollow" in (attributes.get("rel") or "").lower().split():
            continue
        url = base.resolve(href)
        if url is not None:
            seen[url] = None
    return list(seen)


#: Elements whose text a reader never sees.
_UNSEEN = frozenset({"script", "style", "noscript", "template"})


def visible_text(tree: LexborHTMLParser) -> str:
    """The text of the page's body as a reader sees it (scripts, styles, noscript and
    templates left out), its pieces joined by spaces."""
    body = tree.body
    if body is None:
        return ""
    return " ".join(
        node.text_content or ""
        for node in body.traverse(include_text=True)
        if node.tag == "-text" and (node.parent is None or node.parent.tag not in _UNSEEN)
    )
