"""Settings: one frozen, validated dataclass; only the engine reads it, rooms take plain values.

Layering is explicit: defaults, then the spider's `custom_settings`, then the command line's
`-s name=value`, each applied with `Settings.merge`, which rejects unknown names and bad values.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError

#: The values of the `politeness_key` setting.
POLITENESS_KEYS = ("host", "domain", "ip")
#: The values of the `fetch_backend` setting (and of a Request's, and per host).
FETCH_BACKENDS = ("default", "http2", "impersonate")
#: The values of the `duplicates` setting.
DUPLICATE_MODES = ("off", "mark", "nofollow")
#: The values of the `dns_resolver` setting.
DNS_RESOLVERS = ("async", "system")
#: The values of the `http_cache_policy` setting.
CACHE_POLICIES = ("all", "rfc9111")
#: The resource types a rendered page may be kept from loading (Playwright's, but "document":
#: a page's own document, or a frame's, is always loaded).
RESOURCE_TYPES = frozenset(
    {
        "stylesheet",
        "image",
        "media",
        "font",
        "script",
        "texttrack",
        "xhr",
        "fetch",
        "eventsource",
        "websocket",
        "manifest",
        "other",
    }
)
DEFAULT_USER_AGENT = "crawler/0.1 (+https://pypi.org/project/crawler/)"
MIB = 1024 * 1024


#: The HTTP cache's folder unless the settings name another (which is then a recording).
DEFAULT_CACHE_DIR = ".crawler-cache"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Every knob of a crawl. Units are in the names or stated here."""

    #: Worker tasks: how many pages are fetched at once in total.
    concurrency: int = 32
    #: Pages fetched at once from one host.
    per_domain_concurrency: int = 4
    #: Requests per second per host (token bucket); 0 means no limit.
    rate_limit: float = 0.0
    #: What `per_domain_concurrency` and `rate_limit` hold for: each "host", each registrable
    #: "domain" (its hosts together), or each "ip" address (the hosts it serves together).
    politeness_key: str = "host"
    #: Seconds for a whole request, redirects and body included (also the read timeout).
    request_timeout: float = 30.0
    #: Seconds to establish a connection (capped by `request_timeout`).
    connect_timeout: float = 10.0
    #: Extra attempts for transient failures (timeouts, connection errors, `retry_statuses`).
    max_retries: int = 2
    #: HTTP statuses that are retried; every other status >= 400 fails the page at once.
    retry_statuses: tuple[int, ...] = (408, 429, 500, 502, 503, 504)
    #: Base of the exponential back-off between retries, in seconds (full jitter).
    retry_backoff: float = 1.0
    #: Longest back-off between two retries of one URL, in seconds.
    retry_backoff_max: float = 60.0
    #: Longest Retry-After (429/503) honoured, in seconds; a longer one fails the URL.
    max_retry_after: float = 600.0
    #: Failures among a host's last `breaker_window` requests that open its circuit: a 5xx
    #: weighs one, a request with no answer at all (refused, reset, timed out) two.
    breaker_threshold: int = 4
    #: How many of a host's last requests its circuit weighs.
    breaker_window: int = 10
    #: Seconds a host's circuit first stays open before a probe; doubles at each reopening.
    breaker_cooldown: float = 2.0
    #: Longest a host's circuit stays open before the next probe, in seconds (never shorter
    #: than `breaker_cooldown`).
    breaker_cooldown_max: float = 30.0
    #: A host is given up when none of its last `host_give_up_requests` requests succeeded
    #: and none for `host_give_up_after` seconds: its remaining URLs, and those found later,
    #: fail as "host_unavailable". Any success of any of its URLs starts the count over.
    host_give_up_requests: int = 6
    host_give_up_after: float = 60.0
    #: Deepest link depth followed from a start URL (start URLs are depth 0); 0 means no limit.
    max_depth: int = 0
    #: Pages to fetch in the whole crawl, over all resumes; 0 means no limit.
    max_pages: int = 0
    #: Largest response body accepted, in bytes.
    max_response_size: int = 10 * MIB
    #: Redirect hops followed for one request.
    max_redirects: int = 10
    #: Pages to fetch from one host in the whole crawl; 0 means no limit.
    max_pages_per_host: int = 0
    #: Fetch robots.txt before a host's first page and skip what it disallows.
    obey_robots: bool = True
    #: Longest robots.txt Crawl-delay honoured, in seconds (a longer one is capped, with a warning).
    max_crawl_delay: float = 60.0
    #: Seconds a fetched robots.txt stays valid before it is fetched again.
    robots_ttl: float = 86400.0
    #: Respect rel="nofollow" links and <meta name="robots"> / X-Robots-Tag nofollow, noindex.
    obey_nofollow: bool = True
    #: Duplicate pages: "off"; "mark": every parsed page's body hash and MinHash signature (of
    #: its visible text) are kept with it, and a page identical to one already crawled, or
    #: `duplicate_similarity` alike, is marked (`response.duplicate_of`, the `duplicates`
    #: command) and counted; "nofollow": marked, and the requests its callback yields are not
    #: queued (its items are kept).
    duplicates: str = "off"
    #: How alike two pages' texts must be to be near-duplicates: the estimated share of their
    #: 3-word shingles they have in common (0.5 to 1.0).
    duplicate_similarity: float = 0.9
    #: Where the files items name in a `file_urls` field are stored (a folder, or an fsspec
    #: URL: s3://bucket/prefix...); "" means they are not downloaded. See page/files.py.
    files_store: str = ""
    #: Largest file stored, in bytes (a larger one is left out of the item's files, with why).
    files_max_size: int = 1024 * MIB
    #: Seconds one file's download may take.
    files_timeout: float = 600.0
    #: A web archive of every exchange the crawl's pages make (a .warc.gz or .warc path; what
    #: `-o crawl.warc.gz` sets): see crawl/warc.py. "" means none.
    warc_file: str = ""
    #: Bytes after which the archive goes on in a new file (name-00001.warc.gz...); 0: one file.
    warc_max_size: int = 0
    #: The User-Agent header.
    user_agent: str = DEFAULT_USER_AGENT
    #: The token matched against robots.txt User-agent lines; "" means the product token of
    #: `user_agent` ("crawler" for "crawler/0.1 (+...)").
    robots_user_agent: str = ""
    #: Ignore utm_* and other tracking parameters (fbclid, gclid...) when deduplicating (they
    #: leave the canonical form; the URL requested keeps them).
    strip_tracking_params: bool = False
    #: Query parameters ignored when deduplicating, by exact name.
    strip_query_params: tuple[str, ...] = ()
    #: Deduplicate on the query sorted by name, so ?b=1&a=2 and ?a=2&b=1 are one request.
    sort_query: bool = False
    #: Trap guards: URLs longer than this are rejected (and recorded with the reason).
    max_url_length: int = 2048
    #: Trap guards: a path segment repeated more often than this (/a/b/a/b/a/b/a) is rejected.
    max_repeated_segments: int = 3
    #: Trap guards: URLs with more query parameters than this are rejected.
    max_query_params: int = 32
    #: Proxies ("http://user:pass@host:port"), rotated per host; none: HTTP_PROXY/HTTPS_PROXY.
    proxies: tuple[str, ...] = ()
    #: Fetch private, loopback and link-local addresses even when the start URLs are public.
    allow_private_networks: bool = False
    #: How requests go out: "default" (aiohttp, HTTP/1.1), "http2" (HTTP/2 where the server
    #: offers it over TLS, else HTTP/1.1) or "impersonate" (curl-cffi with a browser's TLS and
    #: HTTP/2 fingerprint and headers; the `impersonate` extra). A Request's `fetch_backend`, then
    #: the spider's `host_settings`, choose otherwise for their requests.
    fetch_backend: str = "default"
    #: The browser the "impersonate" backend passes for (curl-cffi's names: "chrome" is its
    #: newest Chrome; "chrome131", "firefox135", "safari184"...).
    impersonate_profile: str = "chrome"
    #: A PEM file of the certificate authorities https servers are verified against, instead of
    #: the system's (as SSL_CERT_FILE does), for every fetch backend.
    ca_bundle: str = ""
    #: How host names are resolved: "async" (DNS through c-ares: the hosts file, then the
    #: servers of resolv.conf or `dns_servers`; answers kept for their TTL) or "system" (the
    #: operating system's getaddrinfo: nsswitch, mDNS...; answers kept 60 s).
    dns_resolver: str = "async"
    #: DNS servers to ask ("ip" or "ip:port") instead of resolv.conf's ("async" resolver).
    dns_servers: tuple[str, ...] = ()
    #: Name lookups in flight at once.
    dns_concurrency: int = 32
    #: Hosts whose politeness state is kept in memory at most (never fewer than the hosts the
    #: crawl works on at once, 16 x concurrency): an idle host beyond it is evicted, and
    #: restored from the store when it has work again. A store of one process, without
    #: max_pages_per_host (otherwise every host known is kept).
    max_hosts_in_memory: int = 10_000
    #: Seconds in-flight pages get to finish after the first stop signal.
    shutdown_grace: float = 10.0
    #: A shared (PostgreSQL) store: seconds a process holds a host without renewing its lease.
    #: After a kill, its hosts pass to other processes within this time.
    lease_ttl: float = 10.0
    #: Item pipelines ("module:Class", made with no arguments), run after the spider's own
    #: `pipelines`, in order.
    pipelines: tuple[str, ...] = ()
    #: Request/response hooks ("module:Class"), run before the spider's own methods, in order.
    hooks: tuple[str, ...] = ()
    #: Item sinks ("module:Class"), fed beside the spider's own `sinks`.
    sinks: tuple[str, ...] = ()
    #: Keep responses in an HTTP cache and answer from it (for developing a spider).
    http_cache: bool = False
    #: The cache's directory (its SQLite file is http.db there).
    http_cache_dir: str = DEFAULT_CACHE_DIR
    #: Seconds a cached response is used; 0 means for as long as it is kept.
    http_cache_ttl: float = 0.0
    #: "all": every successful GET is cached and used again, whatever its headers say (a
    #: second run touches the server 0 times); "rfc9111": HTTP caching rules (Cache-Control,
    #: Expires, revalidation with ETag / Last-Modified).
    http_cache_policy: str = "all"
    #: Pages open at once in the headless browser (requests with render=True).
    browser_concurrency: int = 4
    #: The Chromium to render with; empty: the system's (chromium, chromium-browser,
    #: google-chrome on PATH), else Playwright's own download.
    browser_executable: str = ""
    #: When a rendered page is ready: "load", "domcontentloaded", "networkidle" (no request
    #: for 0.5 s), or a CSS selector that must be on the page.
    render_wait: str = "load"
    #: Resource types a rendered page does not load (Playwright's names: image, font, media,
    #: stylesheet, script, xhr, fetch, ...).
    block_resources: tuple[str, ...] = ("image", "font", "media")

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            expected = _FIELD_TYPES[field.name]
            ok = _of_type(value, expected)
            if expected is tuple:
                item = _TUPLE_ITEMS[field.name]
                ok = isinstance(value, tuple) and all(
                    isinstance(v, item) and not isinstance(v, bool) for v in value
                )
            if not ok:
                raise ConfigError(
                    f"setting {field.name!r} must be {expected.__name__}, got {value!r}"
                )
        _at_least(self, "concurrency", 1)
        _at_least(self, "per_domain_concurrency", 1)
        _at_least(self, "rate_limit", 0)
        _at_least(self, "request_timeout", 0.001)
        _at_least(self, "connect_timeout", 0.001)
        _at_least(self, "max_retries", 0)
        _at_least(self, "retry_backoff", 0)
        _at_least(self, "retry_backoff_max", 0)
        _at_least(self, "max_retry_after", 0)
        _at_least(self, "breaker_threshold", 1)
        _at_least(self, "breaker_window", 1)
        _at_least(self, "breaker_cooldown", 0)
        _at_least(self, "breaker_cooldown_max", 0)
        _at_least(self, "host_give_up_requests", 1)
        _at_least(self, "host_give_up_after", 0)
        _at_least(self, "max_pages_per_host", 0)
        _at_least(self, "max_crawl_delay", 0)
        _at_least(self, "robots_ttl", 0)
        _at_least(self, "max_url_length", 16)
        _at_least(self, "max_repeated_segments", 1)
        _at_least(self, "max_query_params", 1)
        _at_least(self, "lease_ttl", 1)
        _at_least(self, "http_cache_ttl", 0)
        if self.http_cache_policy not in CACHE_POLICIES:
            raise ConfigError(
                f"setting 'http_cache_policy' must be one of {', '.join(CACHE_POLICIES)}, "
                f"got {self.http_cache_policy!r}"
            )
        if not self.http_cache_dir.strip():
            raise ConfigError("setting 'http_cache_dir' must name a directory")
        _at_least(self, "browser_concurrency", 1)
        if not self.render_wait.strip():
            raise ConfigError(
                "setting 'render_wait' must be load, domcontentloaded, networkidle or a CSS "
                "selector"
            )
        unknown = sorted(set(self.block_resources) - RESOURCE_TYPES)
        if unknown:
            raise ConfigError(
                f"setting 'block_resources': {unknown[0]!r} is not a resource type "
                f"(one of {', '.join(sorted(RESOURCE_TYPES))})"
            )
        for proxy in self.proxies:
            parts = urlsplit(proxy)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(
                    f"setting 'proxies' takes http:// or https:// proxy URLs, got {proxy!r}"
                )
        if self.politeness_key not in POLITENESS_KEYS:
            raise ConfigError(
                f"setting 'politeness_key' must be one of {', '.join(POLITENESS_KEYS)}, "
                f"got {self.politeness_key!r}"
            )
        if self.fetch_backend not in FETCH_BACKENDS:
            raise ConfigError(
                f"setting 'fetch_backend' must be one of {', '.join(FETCH_BACKENDS)}, "
                f"got {self.fetch_backend!r}"
            )
        if self.duplicates not in DUPLICATE_MODES:
            raise ConfigError(
                f"setting 'duplicates' must be one of {', '.join(DUPLICATE_MODES)}, "
                f"got {self.duplicates!r}"
            )
        if not 0.5 <= self.duplicate_similarity <= 1.0:
            raise ConfigError(
                "setting 'duplicate_similarity' must be from 0.5 to 1.0, "
                f"got {self.duplicate_similarity!r}"
            )
        _at_least(self, "files_max_size", 1)
        _at_least(self, "warc_max_size", 0)
        if self.warc_file and not self.warc_file.lower().endswith((".warc.gz", ".warc")):
            raise ConfigError(
                f"setting 'warc_file' names a .warc.gz or .warc file, got {self.warc_file!r}"
            )
        if not self.files_timeout > 0:
            raise ConfigError(f"setting 'files_timeout' must be positive, got {self.files_timeout}")
        if not self.impersonate_profile.strip():
            raise ConfigError("setting 'impersonate_profile' must name a browser, e.g. chrome")
        if self.ca_bundle and not os.path.isfile(self.ca_bundle):
            raise ConfigError(f"setting 'ca_bundle': no file {self.ca_bundle!r}")
        if self.dns_resolver not in DNS_RESOLVERS:
            raise ConfigError(
                f"setting 'dns_resolver' must be one of {', '.join(DNS_RESOLVERS)}, "
                f"got {self.dns_resolver!r}"
            )
        _at_least(self, "dns_concurrency", 1)
        if self.dns_servers and self.dns_resolver != "async":
            raise ConfigError(
                "setting 'dns_servers' is for dns_resolver=async (the system resolver asks the "
                "servers the system is set up with)"
            )
        _at_least(self, "max_hosts_in_memory", 1)
        for server in self.dns_servers:
            if not _dns_server(server):
                raise ConfigError(
                    f"setting 'dns_servers' takes IP addresses (with :port if not 53), "
                    f"got {server!r}"
                )
        for name in ("pipelines", "hooks", "sinks"):
            for spec in getattr(self, name):
                if not _OBJECT_PATH.match(spec):
                    raise ConfigError(f"setting {name!r} takes 'module:Class' names, got {spec!r}")
        if any(not 400 <= status <= 599 for status in self.retry_statuses):
            raise ConfigError("setting 'retry_statuses' must list HTTP statuses from 400 to 599")
        _at_least(self, "max_depth", 0)
        _at_least(self, "max_pages", 0)
        _at_least(self, "max_response_size", 1)
        _at_least(self, "max_redirects", 0)
        _at_least(self, "shutdown_grace", 0)
        if not self.user_agent.strip() or any(c in self.user_agent for c in "\r\n"):
            raise ConfigError("setting 'user_agent' must be a non-empty single line")
        if any(c in self.robots_user_agent for c in "\r\n/ "):
            raise ConfigError("setting 'robots_user_agent' must be a single token")

    def merge(self, overrides: Mapping[str, Any]) -> Settings:
        """A copy with `overrides` applied. Strings are parsed to the field's type
        (so `-s concurrency=8` works); an unknown name or a bad value is a ConfigError."""
        unknown = sorted(set(overrides) - _FIELD_TYPES.keys())
        for name in unknown:
            if name in _REPLACED:
                raise ConfigError(f"setting {name!r} is gone: {_REPLACED[name]}")
        if unknown:
            known = ", ".join(sorted(_FIELD_TYPES))
            raise ConfigError(f"unknown setting {unknown[0]!r} (known settings: {known})")
        parsed: dict[str, Any] = {
            name: _parse_setting(name, value)
            if isinstance(value, str)
            else tuple(value)
            if isinstance(value, list) and _FIELD_TYPES[name] is tuple
            else value
            for name, value in overrides.items()
        }
        return dataclasses.replace(self, **parsed)


_FIELD_TYPES: dict[str, type] = {
    "concurrency": int,
    "per_domain_concurrency": int,
    "rate_limit": float,
    "politeness_key": str,
    "request_timeout": float,
    "connect_timeout": float,
    "max_retries": int,
    "retry_statuses": tuple,
    "retry_backoff": float,
    "retry_backoff_max": float,
    "max_retry_after": float,
    "breaker_threshold": int,
    "breaker_window": int,
    "breaker_cooldown": float,
    "breaker_cooldown_max": float,
    "host_give_up_requests": int,
    "host_give_up_after": float,
    "max_depth": int,
    "max_pages": int,
    "max_response_size": int,
    "max_redirects": int,
    "max_pages_per_host": int,
    "obey_robots": bool,
    "max_crawl_delay": float,
    "robots_ttl": float,
    "obey_nofollow": bool,
    "duplicates": str,
    "duplicate_similarity": float,
    "files_store": str,
    "files_max_size": int,
    "files_timeout": float,
    "warc_file": str,
    "warc_max_size": int,
    "user_agent": str,
    "robots_user_agent": str,
    "strip_tracking_params": bool,
    "strip_query_params": tuple,
    "sort_query": bool,
    "max_url_length": int,
    "max_repeated_segments": int,
    "max_query_params": int,
    "proxies": tuple,
    "allow_private_networks": bool,
    "max_hosts_in_memory": int,
    "fetch_backend": str,
    "impersonate_profile": str,
    "ca_bundle": str,
    "dns_resolver": str,
    "dns_servers": tuple,
    "dns_concurrency": int,
    "shutdown_grace": float,
    "lease_ttl": float,
    "pipelines": tuple,
    "hooks": tuple,
    "sinks": tuple,
    "http_cache": bool,
    "http_cache_dir": str,
    "http_cache_ttl": float,
    "http_cache_policy": str,
    "browser_concurrency": int,
    "browser_executable": str,
    "render_wait": str,
    "block_resources": tuple,
}
assert set(_FIELD_TYPES) == {f.name for f in dataclasses.fields(Settings)}
#: Settings of earlier versions, and what took their place.
_REPLACED = {
    "breaker_max_opens": "a host is given up when none of its last host_give_up_requests "
    "requests succeeded and none for host_give_up_after seconds: set those instead",
    "max_host_outage": "a host is given up when none of its last host_give_up_requests "
    "requests succeeded and none for host_give_up_after seconds (any answer used to keep a "
    "host alive): set host_give_up_after instead",
}
#: The item type of each tuple setting.
_TUPLE_ITEMS: dict[str, type] = {
    "retry_statuses": int,
    "strip_query_params": str,
    "proxies": str,
    "dns_servers": str,
    "pipelines": str,
    "hooks": str,
    "sinks": str,
    "block_resources": str,
}
#: A "module:Class" name of a pipeline, hook or sink class.
_OBJECT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _parse_setting(name: str, raw: str) -> Any:
    kind = _FIELD_TYPES[name]
    if kind is str:
        return raw
    if kind is tuple:
        items = [part.strip() for part in raw.split(",") if part.strip()]
        item = _TUPLE_ITEMS[name]
        return tuple(parse_value(part, item, what=f"setting {name!r}") for part in items)
    return parse_value(raw, kind, what=f"setting {name!r}")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_value(raw: str, kind: type, *, what: str) -> Any:
    """Parse a command-line string into `kind`: int, float, bool, str or list of str (comma
    separated). A value that does not parse is a ConfigError naming `what`."""
    text = raw.strip()
    try:
        if kind is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
        if kind is int:
            return int(text.replace("_", ""))
        if kind is float:
            number = float(text)
            if not math.isfinite(number):
                raise ValueError
            return number
        if kind is list:
            return [part.strip() for part in raw.split(",") if part.strip()]
        if kind is str:
            return raw
    except ValueError:
        raise ConfigError(f"{what} must be {kind.__name__}, got {raw!r}") from None
    raise ConfigError(f"{what} cannot be set from the command line (type {kind.__name__})")


def _of_type(value: Any, kind: type) -> bool:
    """Whether `value` is a `kind` as a setting takes it: a bool is no number, an int is a
    float."""
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, kind) or (kind is float and isinstance(value, int))


def _dns_server(server: str) -> bool:
    """Whether `server` is an IP address, or one with a port ("1.2.3.4:53", "[::1]:53")."""
    address, port = server, "53"
    if server.startswith("["):
        address, _, port = server[1:].partition("]:")
    elif server.count(":") == 1:
        address, _, port = server.partition(":")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return port.isdigit() and 0 < int(port) < 65536


def _at_least(settings: Settings, name: str, minimum: float) -> None:
    value = getattr(settings, name)
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"setting {name!r} must be at least {minimum}, got {value!r}")


#: What a spider's `host_settings` may set for the hosts a pattern matches, and its type.
HOST_SETTINGS: dict[str, type] = {
    "rate_limit": float,
    "per_domain_concurrency": int,
    "headers": dict,
    "render": bool,
    "fetch_backend": str,
}


@dataclass(frozen=True, slots=True)
class HostSettings:
    """What one `host_settings` pattern sets (None: the crawl's own): `rate_limit` and
    `per_domain_concurrency` for its hosts, `headers` sent with their requests (a request's
    own headers win), whether their pages are `render`ed (a Request's `render` wins), and the
    `fetch_backend` their requests go out with (a Request's own wins)."""

    rate_limit: float | None = None
    per_domain_concurrency: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    render: bool | None = None
    fetch_backend: str | None = None


class HostOverrides:
    """A spider's `host_settings`: {pattern: {setting: value}}, a pattern being a host
    ("api.example.com": that host only) or "*." and a domain ("*.example.com": the domain and
    every host under it). A host takes the settings of its most specific pattern: its own name,
    else the longest domain it is under. A bad pattern, name or value is a ConfigError naming
    `where`."""

    def __init__(self, mapping: Mapping[str, Mapping[str, Any]], *, where: str) -> None:
        from .urls import InvalidHost, canonical_domain

        if not isinstance(mapping, Mapping):
            raise ConfigError(f"{where}: `host_settings` must be a dict of host patterns")
        self._hosts: dict[str, HostSettings] = {}
        self._domains: dict[str, HostSettings] = {}
        for pattern, values in mapping.items():
            what = f"{where}: host_settings[{pattern!r}]"
            if not isinstance(pattern, str):
                raise ConfigError(f"{what}: patterns are host names or '*.domain'")
            wildcard = pattern.startswith("*.")
            try:
                host = canonical_domain(pattern[2:] if wildcard else pattern)
            except InvalidHost as exc:
                raise ConfigError(f"{what}: {exc}") from None
            (self._domains if wildcard else self._hosts)[host] = _host_settings(values, what)

    def __bool__(self) -> bool:
        return bool(self._hosts or self._domains)

    def for_host(self, host: str) -> HostSettings | None:
        """The settings of `host`'s most specific pattern, if any matches."""
        found = self._hosts.get(host)
        if found is not None or not self._domains:
            return found
        name = host
        while True:
            found = self._domains.get(name)
            if found is not None:
                return found
            dot = name.find(".")
            if dot < 0:
                return None
            name = name[dot + 1 :]


def _host_settings(values: Any, what: str) -> HostSettings:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{what} must be a dict of settings ({', '.join(HOST_SETTINGS)})")
    unknown = sorted(set(values) - HOST_SETTINGS.keys())
    if unknown:
        raise ConfigError(
            f"{what}: {unknown[0]!r} cannot be set per host (one of {', '.join(HOST_SETTINGS)})"
        )
    for name, value in values.items():
        kind = HOST_SETTINGS[name]
        if not _of_type(value, kind):
            raise ConfigError(f"{what}: {name!r} must be {kind.__name__}, got {value!r}")
    rate = values.get("rate_limit")
    if rate is not None and (not math.isfinite(rate) or rate < 0):
        raise ConfigError(f"{what}: 'rate_limit' must be at least 0, got {rate!r}")
    concurrency = values.get("per_domain_concurrency")
    if concurrency is not None and concurrency < 1:
        raise ConfigError(f"{what}: 'per_domain_concurrency' must be at least 1")
    headers = values.get("headers") or {}
    if not all(
        isinstance(k, str) and isinstance(v, str) and not any(c in k + v for c in "\r\n")
        for k, v in headers.items()
    ):
        raise ConfigError(f"{what}: 'headers' must map header names to single-line strings")
    backend = values.get("fetch_backend")
    if backend is not None and backend not in FETCH_BACKENDS:
        raise ConfigError(
            f"{what}: 'fetch_backend' must be one of {', '.join(FETCH_BACKENDS)}, got {backend!r}"
        )
    return HostSettings(
        rate_limit=float(rate) if rate is not None else None,
        per_domain_concurrency=concurrency,
        headers=tuple(headers.items()),
        render=values.get("render"),
        fetch_backend=backend,
    )
