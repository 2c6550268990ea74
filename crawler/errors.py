"""Every error the crawler raises on purpose, in one tree, and the signals a spider raises to
steer it, apart (so that `except CrawlerError` never swallows a signal):

    CrawlerError
    ├── ConfigError          bad setting, unloadable spider file, store from another spider
    ├── FetchError           .url, .kind, .sent: a page could not be fetched
    │   ├── InvalidURL
    │   ├── FetchTimeout
    │   ├── FetchConnectError
    │   ├── ProxyError
    │   ├── ResponseTooLarge
    │   ├── TooManyRedirects
    │   ├── RedirectOutOfScope
    │   ├── ContentDecodingError
    │   ├── BlockedAddress   the host resolves only to addresses the crawl may not contact
    │   ├── RobotsUnavailable  robots.txt answered 5xx or could not be fetched
    │   ├── RenderError      the browser could not render the page
    │   └── HTTPStatusError  .status, .retry_after
    ├── SpiderError          .url: wraps the exception a user callback raised
    ├── StoreError           the store cannot be opened, read or written
    ├── SinkTaken            another process feeds the sink
    ├── SinkFailed           a sink could not take the items (they stay in the store)
    └── NotRecorded          a replayed test asked for a response the recording lacks

    Signal                   raised by spider code to tell the crawler what to do
    ├── Retry                process_response: fetch the page again
    └── DropItem             process_item: leave the item out

Private subclasses (a retry a hook asked for, a rendered page's refused request, a lost
PostgreSQL session) live beside their one user. Parsing helpers raise ValueError subclasses
(DecodingError, SitemapError, InvalidHost) that their callers translate into these.

Only the fetcher imports httpx; it translates httpx errors into FetchError subclasses.
"""

from __future__ import annotations

from typing import Any

from .records import ErrorKind


class CrawlerError(Exception):
    """Root of every error the crawler raises on purpose."""


class ConfigError(CrawlerError):
    """A user mistake in settings, spider files, arguments or the choice of store."""


class StoreError(CrawlerError):
    """The store cannot be opened, read or written."""


class FetchError(CrawlerError):
    """A page could not be fetched. `kind` is a short stable name recorded in the store."""

    kind = ErrorKind.FETCH
    #: Whether trying again later may succeed (connection trouble, timeouts, 5xx, 429).
    transient = False
    #: Whether a request went out before it failed (page budgets count only those).
    sent = True

    def __init__(self, url: str, message: str = "") -> None:
        super().__init__(f"{message or self.kind}: {url}")
        self.url = url
        self.message = message or self.kind


class InvalidURL(FetchError):
    """The URL (or a redirect's target) is not one a browser would fetch."""

    kind = ErrorKind.INVALID_URL
    sent = False


class FetchTimeout(FetchError):
    kind = ErrorKind.TIMEOUT
    transient = True


class FetchConnectError(FetchError):
    kind = ErrorKind.CONNECT
    transient = True


class ProxyError(FetchError):
    """The proxy could not be reached, or refused to carry the request: the page's own host
    was never asked."""

    kind = ErrorKind.PROXY
    transient = True
    sent = False


class ResponseTooLarge(FetchError):
    kind = ErrorKind.TOO_LARGE


class TooManyRedirects(FetchError):
    kind = ErrorKind.TOO_MANY_REDIRECTS


class RedirectOutOfScope(FetchError):
    kind = ErrorKind.REDIRECT_OUT_OF_SCOPE


class ContentDecodingError(FetchError):
    """The body's Content-Encoding is unsupported or its compressed data is corrupt."""

    kind = ErrorKind.DECODING


class RenderError(FetchError):
    """The browser could not render a page: it crashed, hung past the timeout, or the page
    never became ready. Retried like a timeout."""

    kind = ErrorKind.RENDER
    transient = True


class HTTPStatusError(FetchError):
    """The server answered with a status >= 400. `retry_after` is the Retry-After header of a
    429 or 503 in seconds from now (None when absent or unparsable); `response` is the
    response (a fetcher's Fetched, body read) when it was asked for."""

    kind = ErrorKind.HTTP_STATUS
    TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

    def __init__(
        self, url: str, status: int, retry_after: float | None = None, response: Any = None
    ) -> None:
        super().__init__(url, f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after
        self.response = response
        self.transient = status in self.TRANSIENT_STATUSES


class SpiderError(CrawlerError):
    """A spider callback raised, or yielded something the crawler cannot use."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"{message} (while parsing {url})")
        self.url = url
        self.message = message


class BlockedAddress(FetchError):
    """The host resolves only to addresses the crawl may not contact."""

    kind = ErrorKind.BLOCKED_ADDRESS
    sent = False


class RobotsUnavailable(FetchError):
    """robots.txt answered 5xx or could not be fetched: the origin is off limits for now."""

    kind = ErrorKind.ROBOTS_UNAVAILABLE
    transient = True
    sent = False  # the page's own request never went out


class SinkTaken(CrawlerError):
    """A sink found that another process is feeding it (it wrote nothing): this process stops
    feeding it."""


class SinkFailed(CrawlerError):
    """A sink could not take the crawl's items (they stay in the store for the next run).
    `sink` names it; `waiting` counts its items left in the store when the run ended."""

    def __init__(self, message: str, sink: str = "", waiting: int = 0) -> None:
        super().__init__(message)
        self.message, self.sink, self.waiting = message, sink, waiting

    def __str__(self) -> str:
        if not self.waiting:
            return self.message
        return (
            f"{self.message}; {self.waiting} items wait for it in the store: run the same "
            "command again to deliver them"
        )


class NotRecorded(CrawlerError):
    """A replayed test asked for a response the recording does not hold."""


class Signal(Exception):
    """Root of what spider code raises to steer the crawl (not errors)."""


class Retry(Signal):
    """Raise it in `process_response` to fetch the request again (with the usual back-off, up
    to `max_retries`; then the page fails with error "retry" and `reason` as its message)."""

    def __init__(self, reason: str = "retry asked for by process_response") -> None:
        super().__init__(reason)
        self.reason = reason


class DropItem(Signal):
    """Raise it in `process_item` to leave an item out; `reason` is what it is counted under."""

    def __init__(self, reason: str = "dropped") -> None:
        super().__init__(reason)
        self.reason = reason
