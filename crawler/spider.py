"""The Spider base class users subclass, and the loader that finds one in a file; no crawling."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import re
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from .errors import ConfigError
from .models import Callback, Request, Response, http_statuses
from .page.sitemaps import MAX_SITEMAP_BYTES, SITEMAP_LASTMOD, SitemapEntry, SitemapError
from .page.sitemaps import parse as parse_sitemap_body
from .records import ScopeStrategy
from .settings import parse_value
from .stats import SpiderStats

log = logging.getLogger(__name__)

_NOT_ARGUMENTS = frozenset(
    {
        "custom_settings",
        "host_settings",
        "pipelines",
        "hooks",
        "sinks",
        "state",
        "stats",
        "logger",
    }
)
#: The values of `Spider.scope`.
SCOPES = tuple(ScopeStrategy)


class Spider:
    """Subclass this, set `name` and `start_urls`, and write an `async def parse(self, response)`
    generator that yields items (dicts) and Requests.

    - `allowed_domains`: domains (with their subdomains) links may lead to. When left as None,
      `scope` decides from the start URLs: "same-host" (default: those hosts exactly),
      "same-domain" (their registrable domains, with subdomains) or "any".
    - `allow` / `deny`: regular expressions searched in URLs; a URL matching a `deny` pattern
      is not followed, and with `allow` patterns a URL must match one to be followed.
    - `sitemap_urls`: sitemaps, sitemap indexes or robots.txt files (whose `Sitemap:` lines
      are followed; gzip sitemaps too). Their page URLs start the crawl like start URLs, each
      passed through `sitemap_request()`, which filters or routes them.
    - `allow_status`: HTTP statuses >= 400 handed to callbacks instead of failing the
      request, for every request (a Request's own `allow_status` adds to it).
    - `custom_settings`: overrides of `Settings` for this spider, e.g. `{"concurrency": 8}`.
    - `host_settings`: settings per host or domain, e.g. `{"api.example.com": {"rate_limit":
      0.5}, "*.example.org": {"per_domain_concurrency": 1, "headers": {"Referer": "..."},
      "render": True}}` (see settings.HostOverrides): rate_limit, per_domain_concurrency,
      headers, render, fetch_backend.
    - `render = True`: every page is loaded in a headless browser (see render/browser.py); a
      Request's own `render` decides for that request.
    - `pipelines`: objects whose `process_item(item, spider)` each item goes through before
      it is stored (see page/pipelines.py); `hooks`: objects with `process_request(request,
      spider)` / `process_response(request, response, spider)` (see page/hooks.py), or define
      those methods on the spider; `sinks`: where committed items are delivered (crawl/sinks.py).
    - `self.state`: a JSON-serializable dict saved with every commit and restored on resume;
      `self.stats.inc(name, n=1)`: counters shown by `stats`, the live view and the report;
      `self.logger`: a logger named after the spider.
    - `async def opened(self)` runs before the first request, `async def closed(self,
      reason)` after the last commit ("complete", "max_pages", "stopped" or "error").
    - Class attributes double as arguments: `-a start_urls=https://example.com/` on the command
      line sets `self.start_urls` (lists split on commas; ints, floats and bools are parsed).
    """

    name: ClassVar[str] = ""
    start_urls: Sequence[str] = ()
    sitemap_urls: Sequence[str] = ()
    allowed_domains: Sequence[str] | None = None
    scope: ScopeStrategy | str = ScopeStrategy.SAME_HOST
    allow: Sequence[str] = ()
    deny: Sequence[str] = ()
    allow_status: Sequence[int] = ()
    render: bool = False
    custom_settings: ClassVar[Mapping[str, Any]] = {}
    host_settings: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    pipelines: Sequence[Any] = ()
    hooks: Sequence[Any] = ()
    sinks: Sequence[Any] = ()

    @property
    def state(self) -> dict[str, Any]:
        """The spider's state: a JSON-serializable dict, saved with every commit and restored
        when the crawl resumes. Change it in pipelines to keep it exactly in step with the items
        stored (pipelines run in commit order); changes made in callbacks are saved with the
        next commit, which may come before their own page's."""
        state: dict[str, Any] | None = self.__dict__.get("_state")
        if state is None:
            state = self.__dict__["_state"] = {}
        return state

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        if not isinstance(value, dict):
            raise TypeError(f"spider.state must be a dict, got {type(value).__name__}")
        self.__dict__["_state"] = value

    @property
    def logger(self) -> logging.Logger:
        """The spider's logger, named after the spider (as in Scrapy): `self.logger.info(...)`
        prints with the crawl's log, under its -q / -v levels."""
        return logging.getLogger(self.name or type(self).__name__)

    @property
    def stats(self) -> SpiderStats:
        """The spider's own counters: `self.stats.inc("name", n=1)`."""
        stats: SpiderStats | None = self.__dict__.get("_stats")
        if stats is None:
            stats = self.__dict__["_stats"] = SpiderStats()
        return stats

    async def opened(self) -> None:
        """Called once the store is open and the state restored, before the first request."""

    async def closed(self, reason: str) -> None:
        """Called after the last commit of a run, with how it ended."""

    def __init__(self, **arguments: str) -> None:
        cls = type(self)
        for key, raw in arguments.items():
            default = getattr(cls, key, None)
            if (
                key.startswith("_")
                or key in _NOT_ARGUMENTS
                or not hasattr(cls, key)
                or callable(default)
            ):
                raise ConfigError(
                    f"spider {cls.name!r} has no argument {key!r}: declare it as a class "
                    f"attribute ({key} = ...) to accept -a {key}=..."
                )
            kind: type = str if default is None else type(default)
            if isinstance(default, list | tuple):
                kind = list
            setattr(self, key, parse_value(raw, kind, what=f"spider argument {key!r}"))

    def start_requests(self) -> Iterable[Request] | AsyncIterator[Request]:
        """The first requests of a crawl: one per start URL, parsed by `parse`, and one per
        sitemap URL, parsed by `parse_sitemap`. Override it (as a generator or an async
        generator) to start differently."""
        requests = [Request(url) for url in self.start_urls]
        requests += [
            Request(url, callback=self.parse_sitemap, any_content_type=True)
            for url in self.sitemap_urls
        ]
        return requests

    def sitemap_request(self, entry: SitemapEntry) -> Request | None:
        """The Request for a sitemap entry (`entry.url`, `.lastmod`, `.changefreq`,
        `.priority`), or None to skip it. Override it to filter entries or to route them to
        another callback; by default every entry is parsed by `parse`."""
        return Request(entry.url)

    async def parse_sitemap(self, response: Response) -> AsyncIterator[Request]:
        """The built-in callback for sitemap URLs: follows sitemap indexes and robots.txt
        `Sitemap:` lines, and yields `sitemap_request(entry)` for every page entry."""
        robots = response.url.split("?", 1)[0].endswith("/robots.txt")
        try:
            sitemaps, entries = parse_sitemap_body(
                response.body, robots=robots, limit=MAX_SITEMAP_BYTES
            )
        except SitemapError as exc:
            raise ValueError(f"{response.url} is not a sitemap: {exc}") from None
        for url in sitemaps:
            yield response.follow(url, callback=self.parse_sitemap, any_content_type=True)
        for entry in entries:
            request = self.sitemap_request(entry)
            if request is not None:
                if entry.lastmod is not None:  # lets a revisit skip a page fetched since
                    request.meta.setdefault(SITEMAP_LASTMOD, entry.lastmod.timestamp())
                yield request

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        """The default callback. Override it: the base class has nothing to parse."""
        raise NotImplementedError(
            f"spider {self.name!r}: the parse callback is not defined; "
            "write `async def parse(self, response)` in your Spider subclass"
        )
        yield  # pragma: no cover - makes this an async generator

    def callback(self, name: str) -> Callback:
        """The bound callback method called `name`; a ConfigError when there is none."""
        method = getattr(self, name, None) if not name.startswith("_") else None
        if method is None or not inspect.ismethod(method):
            raise ConfigError(f"spider {self.name!r} has no callback method {name!r}")
        return method

    def has_callback(self, name: str) -> bool:
        """Whether `callback(name)` would find a method."""
        try:
            self.callback(name)
        except ConfigError:
            return False
        return True

    def owns_callback(self, callback: Callable[..., Any]) -> bool:
        """Whether `callback` is one of this spider's methods (and so can be stored by name)."""
        return (
            getattr(callback, "__self__", None) is self
            and getattr(self, getattr(callback, "__name__", ""), None) == callback
        )


def load_spider_class(path: str | Path, name: str | None = None) -> type[Spider]:
    """The Spider subclass defined in the file at `path` (the one called `name` when several are).

    Every way this can fail is a ConfigError with a one-line message: missing file, syntax error,
    an exception while importing, no Spider subclass, several and no `name`, an unknown `name`,
    or a spider without a valid `name` attribute.
    """
    file = Path(path)
    found = spider_classes(file)
    if name is not None:
        chosen = [cls for cls in found if name in (cls.name, cls.__name__)]
        if not chosen:
            names = ", ".join(sorted(cls.name or cls.__name__ for cls in found))
            raise ConfigError(f"{file} has no spider named {name!r} (it has: {names})")
        found = chosen[:1]
    if len(found) > 1:
        names = ", ".join(sorted(cls.name or cls.__name__ for cls in found))
        raise ConfigError(
            f"{file} defines several spiders ({names}): choose one with --spider NAME"
        )
    check_spider_class(found[0])
    return found[0]


def spider_classes(file: Path) -> list[type[Spider]]:
    """Every Spider subclass the file at `file` defines, in the order it defines them; a
    ConfigError with a one-line message when there is none or the file cannot be loaded."""
    if not file.is_file():
        raise ConfigError(f"spider file not found: {file}")
    digest = hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:10]
    module_name = f"_crawler_spider_{file.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load {file} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    folder = str(file.parent.resolve())
    if folder not in sys.path:  # modules beside the spider (pipelines.py...) can be imported
        sys.path.append(folder)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[module_name]
        raise ConfigError(f"{file}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:
        del sys.modules[module_name]
        log.debug("error while importing %s", file, exc_info=True)
        raise ConfigError(f"{file}: error while importing: {type(exc).__name__}: {exc}") from None

    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, Spider)
        and obj is not Spider
        and obj.__module__ == module_name
    ]
    if not found:
        raise ConfigError(f"{file} defines no Spider subclass")
    return found


def check_spider_class(cls: type[Spider]) -> None:
    """Reject class attributes a crawl cannot use, with a message naming the attribute."""
    label = cls.__name__
    if not isinstance(cls.name, str) or not cls.name.strip():
        raise ConfigError(f"spider {label} needs a `name` (a non-empty string)")
    if any(c in cls.name for c in "/\\\0"):
        raise ConfigError(f"spider {label}: `name` must not contain path separators")
    for attribute in ("start_urls", "sitemap_urls"):
        urls = getattr(cls, attribute)
        if isinstance(urls, str | bytes) or not all(isinstance(url, str) for url in urls):
            raise ConfigError(f"spider {cls.name!r}: `{attribute}` must be a list of URL strings")
    if isinstance(cls.allowed_domains, str):
        raise ConfigError(f"spider {cls.name!r}: `allowed_domains` must be a list of domains")
    for domain in cls.allowed_domains or ():
        if not isinstance(domain, str):
            raise ConfigError(f"spider {cls.name!r}: allowed_domains entry {domain!r} is not text")
        ipv6 = domain.startswith("[") and domain.endswith("]")
        if any(c in domain for c in "/@ ") or (":" in domain and not ipv6):
            raise ConfigError(
                f"spider {cls.name!r}: allowed_domains entry {domain!r} must be a bare domain "
                "like 'example.com' or an address like '127.0.0.2' (no scheme, port or path)"
            )
    if cls.scope not in SCOPES:
        raise ConfigError(
            f"spider {cls.name!r}: `scope` must be one of {', '.join(SCOPES)}, got {cls.scope!r}"
        )
    for attribute in ("allow", "deny"):
        patterns = getattr(cls, attribute)
        if isinstance(patterns, str):
            raise ConfigError(f"spider {cls.name!r}: `{attribute}` must be a list of patterns")
        for pattern in patterns:
            try:
                re.compile(pattern)
            except (re.error, TypeError) as exc:
                raise ConfigError(
                    f"spider {cls.name!r}: bad `{attribute}` pattern {pattern!r}: {exc}"
                ) from None
    try:
        http_statuses(cls.allow_status) if cls.allow_status else None
    except (TypeError, ValueError):
        raise ConfigError(
            f"spider {cls.name!r}: `allow_status` must list HTTP statuses, got {cls.allow_status!r}"
        ) from None
    if not isinstance(cls.render, bool):
        raise ConfigError(f"spider {cls.name!r}: `render` must be True or False")
    if not isinstance(cls.custom_settings, Mapping):
        raise ConfigError(f"spider {cls.name!r}: `custom_settings` must be a dict")
    for hook in ("opened", "closed"):
        if not inspect.iscoroutinefunction(getattr(cls, hook)):
            raise ConfigError(
                f"spider {cls.name!r}: `{hook}` must be an async method (async def {hook}...)"
            )


def load_object(spec: str, what: str) -> Any:
    """An instance of the class named by `spec` ("module:Class", made with no arguments); a
    ConfigError with a one-line message when it cannot be had. `what` names the setting."""
    module_name, _, qualname = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"{what}: cannot import {module_name!r} for {spec!r}: {type(exc).__name__}: {exc}"
        ) from None
    for part in qualname.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"{what}: module {module_name!r} has no {qualname!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(f"{what}: {spec!r} is not a class")
    try:
        return target()
    except Exception as exc:
        raise ConfigError(f"{what}: {spec}() raised {type(exc).__name__}: {exc}") from None
