"""What the store's backends (and the sinks) share that is no SQL: the timeline's bucket size,
a DSN fit for messages."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


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
