"""Which proxy a request goes through: the request's own, else the crawl's `proxies` rotated
per host (a proxy that keeps failing is rested, like a host's circuit), else the standard
HTTP_PROXY / HTTPS_PROXY / NO_PROXY variables. No I/O: the fetcher sends, this room chooses.
"""

from __future__ import annotations

import base64
import logging
import math
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

from ..clock import Clock
from .politeness import Breaker, Health

log = logging.getLogger(__name__)

#: Counters kept with the pages (see stats.py): "proxy:requests:<proxy>" (requests sent
#: through it) and "proxy:failed:<proxy>" (requests it failed), <proxy> without credentials.
PROXY = "proxy:"


def proxy_name(proxy: str) -> str:
    """How a proxy is shown and counted: its URL without user:password."""
    return split_credentials(proxy)[0]


@dataclass(frozen=True, slots=True)
class ProxyStatus:
    """One of the crawl's proxies in this run: requests through it, those it failed, seconds
    of rest left (0: in use), and its last failure."""

    proxy: str
    requests: int
    failed: int
    resting: float
    last_error: str | None


def split_credentials(proxy: str) -> tuple[str, str | None]:
    """(the proxy URL without user:password, the Proxy-Authorization header value or None)."""
    parts = urlsplit(proxy)
    if parts.username is None:
        return proxy, None
    credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    netloc = parts.netloc.rpartition("@")[2]
    bare = urlunsplit(parts._replace(netloc=netloc))
    return bare, "Basic " + base64.b64encode(credentials.encode()).decode()


def from_environment(url: str, proxies: Mapping[str, str] | None = None) -> str | None:
    """The proxy the standard variables name for `url` (none when NO_PROXY covers its host);
    `proxies` are the variables as `urllib.request.getproxies_environment()` reads them (it
    reads the whole environment: 0.4 ms)."""
    if proxies is None:
        proxies = urllib.request.getproxies_environment()
    parts = urlsplit(url)
    proxy = proxies.get(parts.scheme)
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if not proxy or bypass(parts.hostname or "", proxies):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


class ProxyPool:
    """The crawl's proxies. `choose(host, url)` rotates through them for each host, skipping
    proxies that are resting; with none configured, the environment's proxy (if any). Tell it
    how each request through a proxy went with `done(proxy, error)`: `threshold` failures in a
    row rest a proxy for `cooldown` seconds, doubling up to `cooldown_max`."""

    def __init__(
        self,
        proxies: Sequence[str] = (),
        *,
        threshold: int = 3,
        cooldown: float = 30.0,
        cooldown_max: float = 300.0,
        use_environment: bool = True,
        clock: Clock | None = None,
    ) -> None:
        self._proxies = list(proxies)
        self._breakers = {
            # `threshold` failures in a row rest it; a proxy is never given up
            proxy: Breaker(
                threshold,
                cooldown,
                window=threshold,
                cooldown_max=cooldown_max,
                give_up_after=math.inf,
            )
            for proxy in self._proxies
        }
        self._next: dict[str, int] = {}
        self._requests = dict.fromkeys(self._proxies, 0)
        self._failed = dict.fromkeys(self._proxies, 0)
        self._last_error: dict[str, str] = {}
        #: The environment's proxy variables, read once (when no proxies are given).
        self._environment: dict[str, str] = {}
        if use_environment and not self._proxies:
            self._environment = urllib.request.getproxies_environment()
        self._clock = clock or Clock()

    @property
    def active(self) -> bool:
        """Whether any request may go through a proxy (else `choose` is always None)."""
        return bool(self._proxies) or any(k != "no" for k in self._environment)

    def choose(self, host: str, url: str) -> str | None:
        """The proxy for the next request to `host` (at `url`), or None to go direct."""
        if not self._proxies:
            return from_environment(url, self._environment) if self._environment else None
        now = self._clock.now()
        start = self._next.get(host, 0)
        count = len(self._proxies)
        for step in range(count):
            proxy = self._proxies[(start + step) % count]
            breaker = self._breakers[proxy]
            if breaker.open_until <= now:
                self._next[host] = (start + step + 1) % count
                if not breaker.closed:
                    breaker.probing = True  # back from a rest: its next failure rests it again
                return proxy
        # every proxy rests: the one that is back soonest
        return min(self._proxies, key=lambda proxy: self._breakers[proxy].open_until)

    def done(self, proxy: str, error: str | None = None) -> None:
        """A request through `proxy` got through it (`error` None), or the proxy failed it
        with `error`. A proxy whose failures rest it is logged, with the reason."""
        breaker = self._breakers.get(proxy)
        if breaker is None:
            return
        now = self._clock.now()
        self._requests[proxy] += 1
        if error is None:
            breaker.record(Health.OK, now)
            return
        self._failed[proxy] += 1
        self._last_error[proxy] = error
        resting = breaker.open_until > now
        breaker.record(Health.ERROR, now)
        if not resting and breaker.open_until > now:
            log.warning(
                "proxy %s failing (%d of %d requests; last: %s): resting it for %.0f s",
                proxy_name(proxy),
                self._failed[proxy],
                self._requests[proxy],
                error,
                self._clock.real(breaker.open_until - now),
            )

    def status(self) -> list[ProxyStatus]:
        """Each of the crawl's proxies, as of now (for progress displays)."""
        now = self._clock.now()
        return [
            ProxyStatus(
                proxy_name(proxy),
                self._requests[proxy],
                self._failed[proxy],
                self._clock.real(max(self._breakers[proxy].open_until - now, 0.0)),
                self._last_error.get(proxy),
            )
            for proxy in self._proxies
        ]

    def resting(self) -> list[str]:
        """The proxies resting now."""
        now = self._clock.now()
        return [proxy for proxy, breaker in self._breakers.items() if breaker.open_until > now]
