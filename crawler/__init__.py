"""crawler: an asyncio-native web crawler framework. This module is the one public front door."""

from .clock import Clock
from .crawl.engine import Crawler
from .crawl.parquet import ParquetSink
from .crawl.progress import CrawlStats
from .crawl.sinks import CsvSink, JsonlSink, JsonSink, PostgresSink, Sink, StoredItem
from .errors import (
    ConfigError,
    ContentDecodingError,
    CrawlerError,
    DropItem,
    FetchConnectError,
    FetchError,
    FetchTimeout,
    HTTPStatusError,
    InvalidURL,
    RedirectOutOfScope,
    RenderError,
    ResponseTooLarge,
    Retry,
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
    "CsvSink",
    "DropItem",
    "Failure",
    "FetchConnectError",
    "FetchError",
    "FetchTimeout",
    "FormRequest",
    "HTTPStatusError",
    "InvalidURL",
    "JsonRequest",
    "JsonSink",
    "JsonlSink",
    "ParquetSink",
    "PostgresSink",
    "RedirectOutOfScope",
    "RenderError",
    "Request",
    "Response",
    "ResponseTooLarge",
    "Retry",
    "Settings",
    "Sink",
    "Spider",
    "SpiderError",
    "StoreError",
    "StoredItem",
    "TooManyRedirects",
    "__version__",
]
