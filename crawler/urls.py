"""URLs: canonical form, host keys, scope and trap checks. Pure functions: no I/O.

The canonical form is the crawl's dedup key and the URL that is fetched:

- surrounding spaces and control characters are stripped, tabs and newlines removed, and
  backslashes before the query read as slashes (as browsers do for http and https);
- the host is read as browsers read it (URL Standard): percent-decoded, lowercased, an
  internationalized host IDNA-encoded (UTS #46), an IPv4 address in any spelling written in
  dotted decimal ("2130706434", "0x7f000002", "0177.0.0.2" and "127.2" are all "127.0.0.2"),
  an IPv6 address compressed; a host no browser accepts makes the URL invalid;
- the scheme is lowercased and the default port dropped;
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
from urllib.parse import quote, unquote_to_bytes, urlsplit

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


class InvalidHost(ValueError):
    """A host that no browser would accept (the message says why)."""


def _ipv4_number(part: str) -> int:
    """One part of an IPv4 address as the URL Standard reads it: decimal, 0x-hex or 0-octal."""
    if not part:
        raise InvalidHost("empty part")
    digits, radix = part, 10
    if part[:2] in ("0x", "0X"):
        digits, radix = part[2:], 16
    elif len(part) > 1 and part[0] == "0":
        digits, radix = part[1:], 8
    if not digits:
        return 0
    if any(c not in "0123456789abcdef"[:radix] for c in digits.lower()):
        raise InvalidHost(f"{part!r} is not a number")
    return int(digits, radix)


def _ends_in_number(host: str) -> bool:
    parts = host.split(".")
    if parts[-1] == "":
        if len(parts) == 1:
            return False
        parts.pop()
    last = parts[-1]
    if last.isascii() and last.isdigit():
        return True
    return last[:2] in ("0x", "0X") and all(c in "0123456789abcdefABCDEF" for c in last[2:])


def _ipv4(host: str) -> str:
    """Dotted-decimal form of a host that ends in a number (URL Standard, IPv4 parser):
    "2130706434", "0x7f000002", "0177.0.0.2" and "127.2" are all "127.0.0.2"."""
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if len(parts) > 4:
        raise InvalidHost(f"invalid IPv4 address {host!r}: more than four parts")
    try:
        numbers = [_ipv4_number(part) for part in parts]
    except InvalidHost as exc:
        raise InvalidHost(f"invalid IPv4 address {host!r}: {exc}") from None
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        raise InvalidHost(f"invalid IPv4 address {host!r}: a part is out of range")
    address = numbers[-1]
    for i, n in enumerate(numbers[:-1]):
        address += n * 256 ** (3 - i)
    return str(ipaddress.IPv4Address(address))


def _ipv6(host: str) -> str:
    """An IPv6 address as the URL Standard serializes it: lowercase hex pieces, the first
    longest run of two or more zero pieces compressed to "::"."""
    try:
        if "%" in host:  # a zone id: meaningless to another machine
            raise ValueError
        packed = ipaddress.IPv6Address(host).packed
    except ValueError:
        raise InvalidHost(f"invalid IPv6 address {host!r}") from None
    pieces = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, 16, 2)]
    start, length = -1, 1  # the first longest run of zero pieces, if longer than one
    run = -1
    for i, piece in enumerate([*pieces, 1]):  # a sentinel ends a trailing run
        if piece == 0 and run < 0:
            run = i
        elif piece != 0 and run >= 0:
            if i - run > length:
                start, length = run, i - run
            run = -1
    hexes = [f"{piece:x}" for piece in pieces]
    if start < 0:
        return ":".join(hexes)
    return ":".join(hexes[:start]) + "::" + ":".join(hexes[start + length :])


_FORBIDDEN_HOST = frozenset(" #%/:<>?@[\\]^`{|}\x7f") | frozenset(map(chr, range(0x20)))


def canonical_host(raw: str) -> str:
    """A URL's host as a browser reads it (URL Standard, host parser): percent-decoded,
    lowercased, IDNA-encoded (UTS #46); IPv4 addresses in any spelling as dotted decimal, IPv6
    addresses compressed. Raises InvalidHost for a host a browser would reject."""
    if ":" in raw:
        return _ipv6(raw.strip("[]"))
    host = raw
    if "%" in host:
        try:
            host = unquote_to_bytes(host).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidHost(f"host {raw!r} is not UTF-8 once percent-decoded") from None
    host = host.lower()
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise InvalidHost(f"invalid internationalized host {raw!r}: {exc}") from None
    if not host:
        raise InvalidHost("empty host")
    if any(c in _FORBIDDEN_HOST for c in host):
        raise InvalidHost(f"host {raw!r} has a character no host may have")
    return _ipv4(host) if _ends_in_number(host) else host


def canonical_domain(entry: str) -> str:
    """An `allowed_domains` entry ("Example.COM.", "0x7f000002", "[::1]") as the canonical host
    it names. Raises InvalidHost."""
    return canonical_host(entry.strip().strip(".").removeprefix("[").removesuffix("]"))


@functools.lru_cache(maxsize=4096)
def _host(raw: str) -> str | None:
    try:
        return canonical_host(raw)
    except InvalidHost:
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

    def invalid(self, url: str) -> tuple[str, str, str] | None:
        """For an http(s) URL that `split` refuses (a host or port no browser accepts): the URL
        as written (cleaned), its host as written (lowercased; "" when there is none) and why.
        None for any other URL: one `split` accepts, a relative one, another scheme."""
        url = clean_href(url)
        scheme, colon, _ = url.partition(":")
        if not colon or scheme.lower() not in _DEFAULT_PORTS or self.split(url) is not None:
            return None
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            return url, "", f"invalid URL: {exc}"
        netloc = parts.netloc.rpartition("@")[2]
        raw_host = (parts.hostname or "").lower()
        if not raw_host:
            return url, "", "the URL has no host"
        try:
            canonical_host(raw_host)
        except InvalidHost as exc:
            return url, raw_host, str(exc)
        try:
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            return url, raw_host, f"bad port: {exc}"
        return url, raw_host, f"invalid URL: cannot read {netloc!r}"

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
        domains and subdomains), "any". Raises InvalidHost for an allowed domain no browser
        would accept."""
        allowed = tuple(map(re.compile, allow))
        denied = tuple(map(re.compile, deny))
        if allowed_domains is not None:
            domains = frozenset(map(canonical_domain, allowed_domains))
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
