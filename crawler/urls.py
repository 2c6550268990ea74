"""URLs: resolution as browsers resolve them, the canonical form, host keys, scope and trap
checks. Pure functions: no I/O.

Two forms of a URL, with two jobs:

- **The URL that is requested** is the one a browser requests: links are resolved and URLs
  parsed by the WHATWG URL Standard (the parser browsers share, held to the web-platform-tests
  suite), through ada (`ada-url`), with the fragment removed (it is never sent). Spaces and
  controls around a link are stripped, tabs and newlines in it removed, backslashes read as
  slashes; the host is lowercased, IDNA-encoded (UTS #46), an IPv4 address in any spelling
  written in dotted decimal ("2130706434", "0x7f000002" and "127.2" are all "127.0.0.2"), an
  IPv6 address compressed; the default port is dropped, dot segments ("/a/./b/../c", also
  "%2e") resolved, and characters that may not appear raw are percent-encoded as the standard
  says (a lone "%" stays, so do "[" and "]"). A URL a browser would not parse gives no URL.
- **The canonical form** is the crawl's dedup key, made from the requested URL and never sent:
  escapes of unreserved characters decoded ("%7E" is "~"), other escapes uppercased ("%2f" is
  "%2F"), which RFC 3986 makes the same resource; and, when asked (`Canonicalizer` options),
  tracking parameters removed and the query sorted. Two links with one canonical form are one
  request (the first one seen is fetched, as written).

Most links are plain (an absolute http(s) URL or a path with nothing to normalize); for them the
standard's result is the link itself, which a fast path checks without calling the parser. The
test suite holds the fast path to ada's result.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes, urljoin, urlsplit

import ada_url
import idna

from .records import ScopeStrategy

_DEFAULT_PORTS = {"http": "80", "https": "443"}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_STRIP = "".join(map(chr, range(0x21)))  # C0 controls and space
_REMOVE = str.maketrans("", "", "\t\n\r")

# The fast path: links whose WHATWG result is the link itself (absolute) or the base's origin,
# directory or path followed by the link: path and query characters the standard leaves as
# they are (special schemes: "^" is encoded in a path, "'" in a query), then a fragment of
# anything (dropped). Anything else goes to the parser.
_PATH = r"[A-Za-z0-9\-._~!$&'()*+,;=:@%\[\]|/]*"
_QUERY = r"\?[A-Za-z0-9\-._~!$&()*+,;=:@%\[\]^|/?{}`\\]*"
_PLAIN_TAIL = re.compile(rf"{_PATH}(?:{_QUERY})?")
_PLAIN_HOST = re.compile(r"[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.?")
# a last host label that makes the host an IPv4 address (URL Standard: "ends in a number")
_NUMBER = re.compile(r"(?:^|\.)(?:[0-9]+|0[xX][0-9A-Fa-f]*)\.?$")
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")
# segments the parser must resolve: "." and "..", also spelled "%2e" (and any segment that
# starts with one of those, to keep the check simple)
_DOT_SEGMENT = re.compile(r"(?:^|/)(?:\.|%2[eE])")

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


@functools.lru_cache(maxsize=4096)
def _plain_authority(scheme: str, authority: str) -> str | None:
    """The host of an authority ("host" or "host:port") that the standard leaves as it is, or
    None (userinfo, a default or leading-zero port, a host to rewrite or validate)."""
    host, colon, port = authority.partition(":")
    if colon and not (port.isdigit() and port[0] != "0" and int(port) <= 65535):
        return None
    if port == _DEFAULT_PORTS[scheme] or not _PLAIN_HOST.fullmatch(host) or "xn--" in host:
        return None
    if _NUMBER.search(host) and not _DOTTED_QUAD.fullmatch(host):
        return None  # an IPv4 address in another spelling
    return host


def _dot_segments(path: str) -> bool:
    """Whether a path may hold "." or ".." segments (also spelled with "%2e")."""
    if "/." in path or "%2" in path or path[:1] == ".":
        return bool(_DOT_SEGMENT.search(path))
    return False


def _plain_absolute(url: str) -> tuple[str, str] | None:
    """(the URL as requested, its host) for an absolute URL the standard leaves as it is (but
    for its fragment), or None when the parser must look at it."""
    scheme, sep, rest = url.partition("://")
    if not sep or (scheme != "http" and scheme != "https"):
        return None
    slash = rest.find("/")
    if slash < 0:
        return None
    host = _plain_authority(scheme, rest[:slash])
    if host is None:
        return None
    tail = rest[slash:]
    if "#" in tail:
        tail = tail.partition("#")[0]
        url = url.partition("#")[0]
    if not _PLAIN_TAIL.fullmatch(tail) or _dot_segments(tail.partition("?")[0]):
        return None
    return url, host


#: URLs split lately, each a fixed point of the standard (URL -> (URL, host)): the links that
#: `Base.resolve` resolved by the fast path, so that a link seen again on the next page, and the
#: `split_url` that follows when the crawl takes a link, cost a dict lookup. Cleared when full.
_RECENT: dict[str, tuple[str, str]] = {}
_RECENT_MAX = 8192


class Base:
    """A page's base URL, with the prefixes plain links resolve against worked out once for all
    its links. A base that is not an http(s) URL leaves every link to the parser."""

    __slots__ = ("directory", "document", "host", "origin", "url")

    def __init__(self, url: str) -> None:
        if len(_RECENT) >= _RECENT_MAX:
            _RECENT.clear()
        split = split_url(url)
        self.url, self.host = split if split is not None else (url, "")
        if split is None:
            self.origin = self.document = self.directory = ""
            return
        url = self.url
        path = url.index("/", url.index("//") + 2)
        self.origin = url[:path]
        self.document = url.partition("?")[0]
        self.directory = url[: url.rindex("/", path, len(self.document)) + 1]

    def resolve(self, href: str) -> str | None:
        """The URL a browser requests for a link `href` on the page (see `resolve`)."""
        href = href.strip(_STRIP)
        link = href.partition("#")[0] if "#" in href else href
        first = link[:1]
        if not self.host:
            pass  # not an http(s) base: the parser decides
        elif first == "/":
            # a path-absolute link whose result is a fixed point of the standard is that result
            url = self.origin + link
            if link[1:2] != "/" and (
                url in _RECENT or (_PLAIN_TAIL.fullmatch(link) and not _dot_segments(link))
            ):
                _RECENT[url] = (url, self.host)
                return url
        elif first == "h" and link[:4] == "http":  # (every URL in _RECENT starts so)
            if link in _RECENT:
                return link
            plain = _plain_absolute(link)
            if plain is not None:
                _RECENT[link] = plain
                return link
        elif first == "?":
            if _PLAIN_TAIL.fullmatch(link):
                url = self.document + link
                _RECENT[url] = (url, self.host)
                return url
        elif not first:
            return self.url
        elif (
            _PLAIN_TAIL.fullmatch(link)
            and ":" not in link.partition("/")[0]
            and not _dot_segments(link)
        ):
            url = self.directory + link
            _RECENT[url] = (url, self.host)
            return url
        try:
            url = ada_url.join_url(self.url, href)
        except ValueError:
            return None
        if not url.startswith(("http://", "https://")):
            return None
        return url.partition("#")[0]

    def join(self, href: str) -> str:
        """`href` resolved as a browser resolves it, of any scheme, its fragment kept; one a
        browser would not parse is joined as written (`urllib.parse.urljoin`), so that the
        crawl records it as an invalid URL with the reason."""
        if "#" not in href:
            url = self.resolve(href)
            if url is not None:
                return url
        try:
            return ada_url.join_url(self.url, href)
        except ValueError:
            return urljoin(self.url, clean_href(href))


@functools.lru_cache(maxsize=256)
def _base(url: str) -> Base:
    return Base(url)


def resolve(base: str, href: str) -> str | None:
    """The URL a browser requests for a link `href` on a page whose base URL is `base`:
    absolute, normalized as the URL Standard says, the fragment removed. None when a browser
    would not parse the link, or when it leads to another scheme (mailto:, javascript:...)."""
    return _base(base).resolve(href)


def join(base: str, href: str) -> str:
    """`href` resolved against `base` as a browser resolves it (see `Base.join`)."""
    return _base(base).join(href)


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
    bare = entry.strip().strip(".").removeprefix("[").removesuffix("]")
    canonical_host(bare)  # says why a host is refused
    split = split_url(f"http://[{bare}]/" if ":" in bare else f"http://{bare}/")
    if split is None:
        raise InvalidHost(f"host {bare!r} is not one a browser accepts")
    return split[1]


@dataclass(frozen=True, slots=True)
class Canonicalizer:
    """URLs to request and their canonical forms (see the module docstring), with optional
    query clean-up in the canonical form: `strip_params` are removed by exact name,
    `strip_tracking` removes TRACKING_PARAMS (utm_*, fbclid, gclid...), `sort_query` sorts
    parameters by name (stable). The URL requested keeps its query as the link wrote it."""

    strip_params: frozenset[str] = frozenset()
    strip_tracking: bool = False
    sort_query: bool = False
    #: Whether the query is cleaned up at all (worked out once: `key` runs for every link).
    _cleans: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cleans = bool(self.strip_params) or self.strip_tracking or self.sort_query
        object.__setattr__(self, "_cleans", cleans)

    def split(self, url: str) -> tuple[str, str] | None:
        """(the URL to request, its host) for an absolute http(s) URL: the URL a browser
        requests (see the module docstring), the host without brackets. None when the URL is
        relative, of another scheme, or one a browser would not parse (bad host, bad port)."""
        return split_url(url)

    def key(self, url: str) -> str:
        """The canonical form (the dedup key) of a URL that `split` gave."""
        if "%" not in url and url[-1] != "?" and not self._cleans:
            return url
        head, query_mark, query = url.partition("?")
        if "%" in head:
            start = head.index("/", head.index("//") + 2)
            head = head[:start] + _ESCAPE.sub(_unescape_unreserved, head[start:])
        if query_mark:
            if "%" in query:
                query = _ESCAPE.sub(_unescape_unreserved, query)
            if self._cleans:
                query = self._clean_query(query)
        return f"{head}?{query}" if query else head

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
    """(the URL to request, its host) for an absolute http(s) URL, or None (see
    `Canonicalizer.split`)."""
    recent = _RECENT.get(url)
    if recent is not None:
        return recent
    plain = _plain_absolute(url)
    if plain is not None:
        return plain
    try:
        url = ada_url.normalize_url(url)
    except ValueError:
        return None
    if not url.startswith(("http://", "https://")):
        return None
    url = url.partition("#")[0]
    authority = url[url.index("//") + 2 : url.index("/", url.index("//") + 2)]
    host = authority.rpartition("@")[2]
    if host[:1] == "[":
        return url, host[1 : host.index("]")]
    return url, host.partition(":")[0]


def canonicalize(url: str) -> str | None:
    """The canonical form (the dedup key) of an absolute http(s) URL, or None (see
    `Canonicalizer.split`). With the default options: the URL to request, with escapes of
    unreserved characters decoded and the others uppercased."""
    split = split_url(url)
    return _DEFAULT.key(split[0]) if split else None


def host_of(url: str) -> str | None:
    """The canonical host name of an absolute http(s) URL, or None."""
    split = split_url(url)
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
        strategy: str = ScopeStrategy.SAME_HOST,
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
        if strategy == ScopeStrategy.ANY:
            return cls(allow=allowed, deny=denied)
        hosts = frozenset(h.lower() for h in start_hosts)
        if strategy == ScopeStrategy.SAME_DOMAIN:
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
