"""crawler: an asyncio-native web crawler framework. This module is the one public front door."""

from .clock import Clock
from .engine import Crawler, CrawlStats
from .errors import (
    ConfigError,
    ContentDecodingError,
    CrawlerError,
    FetchConnectError,
    FetchError,
    FetchTimeout,
    HTTPStatusError,
    InvalidURL,
    RedirectOutOfScope,
    ResponseTooLarge,
    SpiderError,
    StoreError,
    TooManyRedirects,
)
from .models import Failure, FormRequest, JsonRequest, Request, Response
from .settings import Settings
from .spider import Spider

__version__ = "0.1.0"

__all__ = [
    "Clock",
    "ConfigError",
    "ContentDecodingError",
    "CrawlStats",
    "Crawler",
    "CrawlerError",
    "Failure",
    "FetchConnectError",
    "FetchError",
    "FetchTimeout",
    "FormRequest",
    "HTTPStatusError",
    "InvalidURL",
    "JsonRequest",
    "RedirectOutOfScope",
    "Request",
    "Response",
    "ResponseTooLarge",
    "Settings",
    "Spider",
    "SpiderError",
    "StoreError",
    "TooManyRedirects",
    "__version__",
]
