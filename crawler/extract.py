"""What users extract from a page: its main content as Markdown or text, its metadata, its
structured data, and objects embedded in its scripts. Pure functions of a page's HTML (and URL),
behind Response's methods; each library is imported at its first use (the `extract` extra), so a
crawl that uses none pays nothing per page.

- Main content and metadata: trafilatura (boilerplate left out: navigation, footers, sidebars,
  cookie banners, ads; headings, lists, links, tables and code kept). Chosen by measuring:
  benchmarks/extract.py.
- Structured data: extruct (JSON-LD, microdata, OpenGraph, RDFa, as plain dicts).
- Objects in scripts: chompjs (JSON and JavaScript object literals: unquoted keys, single
  quotes, trailing commas, undefined).
"""

from __future__ import annotations

import re
from typing import Any

from .errors import ConfigError

#: What `metadata()` gives, in order (None where the page does not say).
METADATA_FIELDS = (
    "title",
    "description",
    "language",
    "author",
    "published",
    "canonical_url",
    "site_name",
)


def _module(name: str) -> Any:
    """An extraction library, or a ConfigError saying how to install it."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise ConfigError(f"{name} is needed for this: pip install 'crawler[extract]'") from None


def main_content(html: str, url: str, output: str) -> str:
    """The page's main content as "markdown", "text" (plain) or "html"; "" when there is none."""
    trafilatura = _module("trafilatura")
    formats = {"markdown": "markdown", "text": "txt", "html": "html"}
    found = trafilatura.extract(
        html,
        url=url,
        output_format=formats[output],
        include_links=output != "text",
        include_tables=True,
        include_formatting=output != "text",
        include_images=False,
        include_comments=False,
        deduplicate=False,
    )
    return found or ""


_LANG = re.compile(r"<html\b[^>]*?\blang\s*=\s*[\"']?([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]+)*)", re.I)


def metadata(html: str, url: str) -> dict[str, str | None]:
    """Title, description, language (the html element's lang), author, published date
    (YYYY-MM-DD: from the page's markup, as meta tags, time elements, JSON-LD and the URL give
    it, not guessed from its text), canonical URL and site name."""
    trafilatura = _module("trafilatura")
    # extensive=False: no search of the text for dates (7.4 -> 2.2 ms on the benchmark page,
    # benchmarks/extract.py; the template pages' dates are found all the same)
    found = trafilatura.extract_metadata(html, default_url=None, extensive=False)
    data = found.as_dict() if found is not None else {}
    language = _LANG.search(html[:4096])
    return {
        "title": data.get("title") or None,
        "description": data.get("description") or None,
        "language": language.group(1).replace("_", "-") if language else None,
        "author": data.get("author") or None,
        "published": data.get("date") or None,
        "canonical_url": data.get("url") or None,
        "site_name": data.get("sitename") or None,
    }


#: The syntaxes `structured_data()` reads, as extruct names them.
SYNTAXES = ("json-ld", "microdata", "opengraph", "rdfa")


def structured_data(html: str, url: str) -> dict[str, list[Any]]:
    """JSON-LD, microdata, OpenGraph and RDFa on the page, each a list of plain dicts (in
    extruct's uniform shape: "@type", "@context" and properties)."""
    extruct = _module("extruct")
    import warnings

    with warnings.catch_warnings():  # (lxml's FutureWarning from inside extruct)
        warnings.simplefilter("ignore", FutureWarning)
        found = extruct.extract(
            html, base_url=url, uniform=True, syntaxes=list(SYNTAXES), errors="log"
        )
    return {syntax: list(found.get(syntax) or []) for syntax in SYNTAXES}


def js_object(scripts: list[str], name: str | None) -> Any:
    """The object (or array) assigned to `name` in one of `scripts` (`window.__STATE__ = {...}`,
    `"state": {...}`, `var config = [...]`), or without a name the first object literal of
    the first script that has one; None when there is none."""
    chompjs = _module("chompjs")
    for script in scripts:
        if name is None:
            start = _first_literal(script, 0)
        else:
            at = script.find(name)
            start = None
            while at >= 0 and start is None:
                rest = at + len(name)
                match = re.match(r"\s*[\"']?\s*[:=]\s*", script[rest:])
                if match:
                    start = rest + match.end()
                    if script[start : start + 1] not in ("{", "["):
                        start = None
                if start is None:
                    at = script.find(name, rest)
        if start is None:
            continue
        try:
            return chompjs.parse_js_object(script[start:])
        except ValueError:
            continue
    return None


_LITERAL = re.compile(r"[{\[]")


def _first_literal(script: str, at: int) -> int | None:
    """Where the first object or array literal of `script` starts."""
    found = _LITERAL.search(script, at)
    return found.start() if found else None
