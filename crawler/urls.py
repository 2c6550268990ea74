"""URLs: canonical form, host keys and scope checks. Pure functions: no I/O.

The canonical form is the crawl's dedup key and the URL that is fetched:
scheme and host lowercased, default port dropped, fragment removed, an empty path becomes "/",
tabs and newlines removed (as browsers do); path and query are otherwise kept as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
_STRIP = str.maketrans("", "", "\t\n\r")


def split_url(url: str) -> tuple[str, str] | None:
    """(canonical URL, host) for an absolute http(s) URL, or None when the URL is relative,
    of another scheme, or malformed (bad port, no host)."""
    if "\t" in url or "\n" in url or "\r" in url:
        url = url.translate(_STRIP)
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            return None
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if not host:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        netloc = f"{userinfo}@{netloc}"
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{path}{query}", host


def canonicalize(url: str) -> str | None:
    """The canonical form of an absolute http(s) URL, or None (see `split_url`)."""
    split = split_url(url)
    return split[0] if split else None


def host_of(url: str) -> str | None:
    """The lowercased host name of an absolute http(s) URL, or None."""
    split = split_url(url)
    return split[1] if split else None


@dataclass(frozen=True, slots=True)
class Scope:
    """Which hosts a crawl may visit: `hosts` exactly, `domains` with their subdomains.
    Both empty means any host."""

    hosts: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()

    @classmethod
    def of(cls, *, start_hosts: Iterable[str], allowed_domains: Iterable[str] | None) -> Scope:
        """The spider's scope: its `allowed_domains` when given, else its start hosts."""
        if allowed_domains is None:
            return cls(hosts=frozenset(h.lower() for h in start_hosts))
        return cls(domains=frozenset(d.lower().strip(".") for d in allowed_domains))

    @property
    def unlimited(self) -> bool:
        return not self.hosts and not self.domains

    def allows(self, host: str) -> bool:
        """Whether `host` (lowercased) is in scope."""
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
