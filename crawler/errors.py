"""The exception tree: every error the crawler raises on purpose derives from CrawlerError.

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
    │   ├── RenderError      the browser could not render the page
    │   └── HTTPStatusError  .status, .retry_after
    ├── SpiderError          .url: wraps the exception a user callback raised
    └── StoreError           the store cannot be opened, read or written

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
