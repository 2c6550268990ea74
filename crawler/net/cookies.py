"""Cookie jars, one per session name, their text form for the store, and the form a browser takes
them in (rendered pages). No I/O.

Every spider has a default session (""); requests naming another session use a jar of their
own, so that one crawl can hold several logins. A jar changed by a response is "dirty" until
`take()` returns its text, which the crawl commits with the page that took it: a crawl resumed
after a crash has the jars as of its last committed page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http.cookiejar import Cookie, CookieJar
from typing import Any

import httpx

#: The attributes of a cookie that are kept (http.cookiejar.Cookie's, but for comments).
_FIELDS = (
    "version",
    "name",
    "value",
    "port",
    "port_specified",
    "domain",
    "domain_specified",
    "domain_initial_dot",
    "path",
    "path_specified",
    "secure",
    "expires",
    "discard",
)


class Jars:
    """The crawl's cookie jars by session name, loaded from their text (see `dumps`)."""

    def __init__(self, saved: Mapping[str, str] | None = None) -> None:
        self._jars: dict[str, httpx.Cookies] = {}
        self._dirty: set[str] = set()
        for session, text in (saved or {}).items():
            self._jars[session] = httpx.Cookies(loads(text))

    def jar(self, session: str) -> httpx.Cookies:
        """The jar of `session` (made empty on first use)."""
        jar = self._jars.get(session)
        if jar is None:
            jar = self._jars[session] = httpx.Cookies()
        return jar

    def set(self, session: str, host: str, cookies: Mapping[str, str]) -> None:
        """Keep `cookies` (name to value) in the jar of `session`, for `host` and every path."""
        jar = self.jar(session)
        for name, value in cookies.items():
            jar.set(name, value, domain=host, path="/")
        self._dirty.add(session)

    def changed(self, session: str) -> None:
        """The jar of `session` was changed (a response set cookies)."""
        self._dirty.add(session)

    def take(self, session: str) -> str | None:
        """The text of the jar of `session` if it changed since the last `take`, else None."""
        if session not in self._dirty:
            return None
        self._dirty.discard(session)
        return dumps(self.jar(session).jar)


def dumps(jar: CookieJar) -> str:
    """A jar as JSON text. Cookies without an expiry (session cookies) are kept too: a crawl's
    session lasts across its resumes."""
    return json.dumps(
        [
            {**{field: getattr(cookie, field) for field in _FIELDS}, "rest": _rest(cookie)}
            for cookie in jar
        ],
        separators=(",", ":"),
    )


def loads(text: str) -> CookieJar:
    """A jar from `dumps`' text; cookies that have expired since are left out. Text that is
    not a jar's is a ValueError."""
    jar = CookieJar()
    try:
        for fields in json.loads(text):
            cookie = Cookie(
                **{field: fields[field] for field in _FIELDS},
                comment=None,
                comment_url=None,
                rest=fields.get("rest") or {},
            )
            jar.set_cookie(cookie)
    except (TypeError, KeyError, ValueError) as exc:
        raise ValueError(f"not a cookie jar: {exc}") from None
    jar.clear_expired_cookies()
    return jar


def to_browser(jar: CookieJar) -> list[dict[str, Any]]:
    """A jar's cookies as a browser takes them (Playwright's cookie dicts)."""
    cookies = []
    for cookie in jar:
        entry: dict[str, Any] = {
            "name": cookie.name,
            "value": cookie.value or "",
            "domain": cookie.domain,
            "path": cookie.path or "/",
            "secure": bool(cookie.secure),
            "httpOnly": cookie.has_nonstandard_attr("HttpOnly"),
        }
        if cookie.expires is not None:
            entry["expires"] = float(cookie.expires)
        cookies.append(entry)
    return cookies


def from_browser(cookie: Mapping[str, Any]) -> Cookie:
    """A cookie a browser holds (a Playwright cookie dict), as a jar keeps it."""
    domain = cookie["domain"]
    expires = cookie.get("expires", -1)
    rest = {"HttpOnly": ""} if cookie.get("httpOnly") else {}
    return Cookie(
        version=0,
        name=cookie["name"],
        value=cookie["value"],
        port=None,
        port_specified=False,
        domain=domain,
        domain_specified=domain.startswith("."),
        domain_initial_dot=domain.startswith("."),
        path=cookie.get("path") or "/",
        path_specified=True,
        secure=bool(cookie.get("secure")),
        expires=int(expires) if expires is not None and expires >= 0 else None,
        discard=expires is None or expires < 0,
        comment=None,
        comment_url=None,
        rest=rest,
    )


def _rest(cookie: Cookie) -> dict[str, Any]:
    return dict(getattr(cookie, "_rest", {}))
