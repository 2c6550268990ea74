"""What the store's backends (and the sinks) share that is no SQL: the spider's policy on
redirects and sitemaps (every backend asks it, none writes it in its own SQL), what a commit
counts, the timeline's bucket size, a DSN fit for messages."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

from ..records import NewRequest, Outcome, Revisit
from ..stats import REVISIT
from ..stats import add as add_counters

#: The message of a redirect's final URL, marked done by its redirect: it is revisited
#: through that redirect, never on its own.
REDIRECTED = "fetched through a redirect"
#: The revisit outcomes that take a page's items away (new ones, if any, come in).
REPLACING = frozenset({Revisit.CHANGED, Revisit.GONE})


def crawled_on_its_own(outcome: Outcome, url: str) -> Outcome:
    """A redirect to `url`, which another row holds (leased, done or failed): that page is, or
    was, crawled under its own URL, so this outcome keeps no items or links."""
    return dataclasses.replace(
        outcome,
        items=[],
        links=[],
        fingerprint=None,
        message=f"redirected to {url}, crawled on its own",
    )


def sitemap_dated(links: Iterable[NewRequest]) -> list[str]:
    """The identities of the links a sitemap gave a last-modified date."""
    return [link.key or link.url for link in links if link.lastmod]


def unchanged_by_sitemap(
    links: Iterable[NewRequest], fetched: Mapping[str, float | None]
) -> list[str]:
    """The queued revisits a sitemap says have not changed: of the identities in `fetched`
    (queued revisits, with when their page was last fetched), those a link of the sitemap
    dates no later than that fetch. They are marked done as unchanged, never fetched."""
    unchanged = []
    for link in links:
        identity = link.key or link.url
        last = fetched.get(identity)
        if link.lastmod and last is not None and last >= link.lastmod:
            unchanged.append(identity)
    return unchanged


def count_unchanged(outcome: Outcome, unchanged: int) -> None:
    """Count on the sitemap's outcome the revisits it answered."""
    if unchanged:
        outcome.counters = outcome.counters or {}
        key = REVISIT + Revisit.UNCHANGED
        outcome.counters[key] = outcome.counters.get(key, 0) + unchanged


def commit_counters(
    outcomes: Sequence[Outcome], counters: Mapping[str, int] | None
) -> dict[str, int]:
    """What a commit adds to the crawl's counters: those bumped outside any page, and its
    outcomes' own."""
    total = dict(counters or {})
    for outcome in outcomes:
        add_counters(total, outcome.counters)
    return total


def bucket_seconds(span: float) -> float:
    """A round bucket size that splits `span` seconds into at most ~120 buckets."""
    for size in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400):
        if span / size <= 120:
            return float(size)
    return 86400.0 * (span // (86400 * 120) + 1)


def safe_dsn(dsn: str) -> str:
    """`dsn` without its password, for messages."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
