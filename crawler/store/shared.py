"""What the store's backends (and the sinks) share that is no SQL: the redirect and revisit
rules' constants, the timeline's bucket size, a DSN fit for messages."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from ..records import Revisit

#: The message of a redirect's final URL, marked done by its redirect: it is revisited
#: through that redirect, never on its own.
REDIRECTED = "fetched through a redirect"
#: The revisit outcomes that take a page's items away (new ones, if any, come in).
REPLACING = frozenset({Revisit.CHANGED, Revisit.GONE})


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
