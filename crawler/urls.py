"""URLs: canonical form, host keys, scope and trap checks. Pure functions: no I/O.

The canonical form is the crawl's dedup key and the URL that is fetched:

- surrounding spaces and control characters are stripped, tabs and newlines removed, and
  backslashes before the query read as slashes (as browsers do for http and https);
- scheme and host are lowercased, an internationalized host is IDNA-encoded (UTS #46), and the
  default port is dropped;
- dot segments are resolved ("/a/./b/../c" is "/a/c"), an empty path becomes "/";
- percent-encoding is normalized: escapes of unreserved characters are decoded ("%7E" is "~"),
  other escapes are uppercased ("%2f" is "%2F", which stays encoded), and characters that may
  not appear raw (spaces, non-ASCII, quotes...) are encoded as UTF-8;
- the fragment is removed; path and query otherwise keep their case and order.

Optionally (`Canonicalizer` options) tracking parameters are removed and the query is sorted.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import idna

_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PATH_SAFE = "/:@!$&'()*+,;=%"
_QUERY_SAFE = "/?:@!$&'()*+,;=%\\"
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# anything that needs normalizing: an escape, a raw character outside the safe set, dot segments
_NEEDS_WORK = re.compile(r"[^A-Za-z0-9\-._~/:@!$&'()*+,;=?]|%|/\.\.?(?:/|$)")
_STRIP = "".join(map(chr, range(0x21)))  # C0 controls and space
_REMOVE = str.maketrans("", "", "\t\n\r")

#: Query parameters removed by `strip_tracking`: exact names, and prefixes ending in "_".
TRACKING_PARAMS = frozenset(
    {
        "utm_",
        "fbclid",
        "gclid",
        "dclid",
        "msclkid",
        "mc_cid",
        "mc_eid",
        "_hsenc",
        "_hsmi",
        "yclid",
        "igshid",
    }
)


def clean_href(href: str) -> str:
    """A URL or href as browsers read it: surrounding spaces and controls stripped, tabs and
    newlines removed, backslashes before the query read as slashes."""
    href = href.strip(_STRIP)
    if "\t" in href or "\n" in href or "\r" in href:
        href = href.translate(_REMOVE)
    if "\\" in href:
        head, sep, tail = href.partition("?")
        href = head.replace("\\", "/") + sep + tail
    return href


def _unescape_unreserved(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else f"%{match.group(1).upper()}"


def _normalize(part: str, safe: str) -> str:
    part = _LONE_PERCENT.sub("%25", part)
    part = _ESCAPE.sub(_unescape_unreserved, part)
    return quote(part, safe=safe)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986, 5.2.4."""
    if "." not in path:
        return path
    output: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    result = "/".join(output)
    return result if result.startswith("/") else "/" + result


@functools.lru_cache(maxsize=4096)
def _host(raw: str) -> str | None:
    host = raw.lower()
    if host.isascii():
        return host if host and not any(c in host for c in " %<>\\^`{|}") else None
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError:
        return None


@dataclass(frozen=True, slots=True)
class Canonicalizer:
    """Canonical URLs (see the module docstring), with optional query clean-up:
    `strip_params` are removed by exact name, `strip_tracking` removes TRACKING_PARAMS (utm_*,
    fbclid, gclid...), `sort_query` sorts parameters by name (stable)."""

    strip_params: frozenset[str] = frozenset()
    strip_tracking: bool = False
    sort_query: bool = False

    def split(self, url: str) -> tuple[str, str] | None:
        """(canonical URL, host) for an absolute http(s) URL, or None when the URL is relative,
        of another scheme, or malformed (bad port, bad host)."""
        url = clean_href(url)
        try:
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            if scheme not in _DEFAULT_PORTS:
                return None
            raw_host = parts.hostname
            port = parts.port
        except ValueError:
            return None
        host = _host(raw_host) if raw_host else None
        if not host:
            return None
        netloc = f"[{host}]" if ":" in host else host
        if port is not None and port != _DEFAULT_PORTS[scheme]:
            netloc = f"{netloc}:{port}"
        userinfo, at, _ = parts.netloc.rpartition("@")
        if at:
            netloc = f"{userinfo}@{netloc}"
        path = parts.path or "/"
        if _NEEDS_WORK.search(path):
            path = _normalize(_remove_dot_segments(path), _PATH_SAFE)
        query = parts.query
        if query:
            if _NEEDS_WORK.search(query):
                query = _normalize(query, _QUERY_SAFE)
            if self.strip_params or self.strip_tracking or self.sort_query:
                query = self._clean_query(query)
        return f"{scheme}://{netloc}{path}{'?' + query if query else ''}", host

    def _clean_query(self, query: str) -> str:
        pairs = [pair for pair in query.split("&") if pair]
        kept = [pair for pair in pairs if not self._stripped(pair.split("=", 1)[0])]
        if self.sort_query:
            kept.sort(key=lambda pair: pair.split("=", 1)[0])
        return "&".join(kept)

    def _stripped(self, name: str) -> bool:
        if name in self.strip_params:
            return True
        if not self.strip_tracking:
            return False
        return name in TRACKING_PARAMS or name.startswith("utm_")


_DEFAULT = Canonicalizer()


def split_url(url: str) -> tuple[str, str] | None:
    """(canonical URL, host) with the default canonicalization, or None (see Canonicalizer)."""
    return _DEFAULT.split(url)


def canonicalize(url: str) -> str | None:
    """The canonical form of an absolute http(s) URL, or None (see `Canonicalizer.split`)."""
    split = _DEFAULT.split(url)
    return split[0] if split else None


def host_of(url: str) -> str | None:
    """The canonical host name of an absolute http(s) URL, or None."""
    split = _DEFAULT.split(url)
    return split[1] if split else None


@functools.lru_cache(maxsize=1)
def _public_suffixes() -> Any:
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def registrable_domain(host: str) -> str:
    """The domain a host belongs to by the Public Suffix List ("www.example.co.uk" is
    "example.co.uk"); an IP address, or a host that is itself a public suffix, is its own."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    return _public_suffixes().privatesuffix(host) or host


@dataclass(frozen=True, slots=True)
class Scope:
    """Which hosts a crawl may visit: `hosts` exactly, `domains` with their subdomains, and
    URL patterns: a URL matching a `deny` pattern is out; with `allow` patterns, a URL must
    match one. No hosts and no domains means any host."""

    hosts: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()
    allow: tuple[re.Pattern[str], ...] = ()
    deny: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def of(
        cls,
        *,
        start_hosts: Iterable[str],
        allowed_domains: Iterable[str] | None,
        strategy: str = "same-host",
        allow: Iterable[str] = (),
        deny: Iterable[str] = (),
    ) -> Scope:
        """The spider's scope: its `allowed_domains` when given, else by `strategy` from the
        start hosts: "same-host" (those hosts exactly), "same-domain" (their registrable
        domains and subdomains), "any"."""
        allowed = tuple(map(re.compile, allow))
        denied = tuple(map(re.compile, deny))
        if allowed_domains is not None:
            domains = frozenset(d.lower().strip(".") for d in allowed_domains)
            return cls(domains=domains, allow=allowed, deny=denied)
        if strategy == "any":
            return cls(allow=allowed, deny=denied)
        hosts = frozenset(h.lower() for h in start_hosts)
        if strategy == "same-domain":
            domains = frozenset(registrable_domain(h) for h in hosts)
            return cls(domains=domains, allow=allowed, deny=denied)
        return cls(hosts=hosts, allow=allowed, deny=denied)

    @property
    def unlimited(self) -> bool:
        return not self.hosts and not self.domains

    def allows_host(self, host: str) -> bool:
        """Whether `host` (canonical) is in scope, patterns aside."""
        if self.unlimited or host in self.hosts or host in self.domains:
            return True
        if not self.domains:
            return False
        dot = host.find(".")
        while dot != -1:
            if host[dot + 1 :] in self.domains:
                return True
            dot = host.find(".", dot + 1)
        return False

    def allows(self, url: str, host: str) -> bool:
        """Whether a canonical `url` of `host` is in scope: host, then deny, then allow."""
        if not self.allows_host(host):
            return False
        if any(p.search(url) for p in self.deny):
            return False
        return not self.allow or any(p.search(url) for p in self.allow)


@dataclass(frozen=True, slots=True)
class TrapGuard:
    """Limits that catch crawler traps (calendars, session ids, relative-link loops)."""

    max_length: int = 2048
    max_repeats: int = 3
    max_params: int = 32

    def reason(self, url: str) -> str | None:
        """Why a canonical URL looks like a trap, or None when it looks fine."""
        if len(url) > self.max_length:
            return f"URL longer than {self.max_length} characters"
        rest = url.split("://", 1)[1]
        path, _, query = rest.partition("?")
        segments = [s for s in path.split("/")[1:] if s]
        if len(segments) > self.max_repeats:
            counts: dict[str, int] = {}
            for segment in segments:
                counts[segment] = counts.get(segment, 0) + 1
                if counts[segment] > self.max_repeats:
                    return f"path segment {segment!r} repeated more than {self.max_repeats} times"
        if query and query.count("&") + 1 > self.max_params:
            return f"more than {self.max_params} query parameters"
        return None
