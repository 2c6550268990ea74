"""Requests to and from their stored form: identity keys, and what a row keeps. Pure: no I/O.

A request's identity (the dedup key) is its method, canonical URL, body and session: a plain
GET's in the default session is its canonical URL (stored apart from the URL requested only when
the two differ, so stores of earlier versions keep theirs),
any other request's is "METHOD URL DIGEST[ @SESSION]" (a digest of the body): two users' pages
at one URL are two requests. A `dont_filter` request gets an identity of its
own, made from where it was yielded (its parent's row id and its place among the parent's
requests, or its place among the start requests), so that a page fetched again after a crash
yields the same identities and nothing is added twice.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..errors import SpiderError
from ..models import Request
from ..records import ErrorKind, NewRequest, StoredRequest
from ..spider import Spider
from .sitemaps import SITEMAP_LASTMOD


def identity(
    method: str, url: str, body: bytes | None, session: str | None, requested: str | None = None
) -> str | None:
    """The identity of a request to canonical `url` (requested as `requested`, by default
    `url` itself), or None when it is the URL requested (a plain GET in the default session
    whose URL is its canonical form)."""
    if method == "GET" and not body and session is None:
        return None if requested is None or requested == url else url
    digest = hashlib.sha1(body).hexdigest()[:20] if body else "-"
    key = f"{method} {url} {digest}"
    return key if session is None else f"{key} @{session}"


def request_key(
    request: Request, url: str, origin: str | None = None, requested: str | None = None
) -> str | None:
    """The identity of `request` at canonical `url`, requested as `requested` (see
    `identity`); `origin` says where a `dont_filter` request was yielded."""
    key = identity(request.method, url, request.body, request.session, requested)
    if request.dont_filter:
        key = f"{key or url} ~{origin or 'unique'}"
    return key


def to_stored(
    spider: Spider,
    request: Request,
    split: tuple[str, str],
    depth: int,
    error: ErrorKind | None = None,
    message: str | None = None,
    origin: str | None = None,
    canonical: str | None = None,
) -> NewRequest:
    """The stored form of a Request whose (URL to request, host) is `split`, and whose
    canonical form is `canonical` (by default the URL itself); with an `error`,
    it is recorded as failed (see NewRequest). A callback or errback that is not the spider's
    own method, or meta that is not JSON, is a SpiderError."""
    for role, method in (("callback", request.callback), ("errback", request.errback)):
        if method is not None and not spider.owns_callback(method):
            raise SpiderError(
                request.url,
                f"{role} {method!r} is not a method of the spider "
                f"({role}s are stored by name so that a resumed crawl finds them)",
            )
    try:
        meta = json.dumps(request.meta) if request.meta else None
    except (TypeError, ValueError) as exc:
        raise SpiderError(request.url, f"Request meta is not JSON-serializable: {exc}") from exc
    return NewRequest(
        url=split[0],
        host=split[1],
        callback=request.callback_name,
        priority=request.priority,
        depth=depth,
        meta=meta,
        any_content_type=request.any_content_type,
        error=error,
        message=message,
        key=request_key(request, canonical or split[0], origin, split[0]),
        method=None if request.method == "GET" else request.method,
        body=request.body,
        errback=request.errback_name,
        spec=_spec(request),
        lastmod=_lastmod(request.meta.get(SITEMAP_LASTMOD)),
    )


def _lastmod(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def from_stored(spider: Spider, stored: StoredRequest) -> Request:
    """The Request a stored row stands for, its callback and errback found on `spider`."""
    spec: dict[str, Any] = json.loads(stored.spec) if stored.spec else {}
    return Request(
        stored.url,
        spider.callback(stored.callback),
        stored.priority,
        json.loads(stored.meta) if stored.meta else {},
        method=stored.method or "GET",
        headers=spec.get("headers"),
        body=stored.body,
        cookies=spec.get("cookies"),
        session=spec.get("session"),
        dont_filter=spec.get("dont_filter", False),
        errback=spider.callback(stored.errback) if stored.errback else None,  # type: ignore[arg-type]
        allow_status=spec.get("allow_status", ()),
        any_content_type=stored.any_content_type,
        proxy=spec.get("proxy"),
        render=spec.get("render"),
        depth=stored.depth,
        fetch_backend=spec.get("fetch_backend"),
    )


def _spec(request: Request) -> str | None:
    """JSON text of what a row keeps beyond its columns, or None for a plain request."""
    spec: dict[str, Any] = {}
    if request.headers:
        spec["headers"] = request.headers
    if request.cookies:
        spec["cookies"] = request.cookies
    if request.session is not None:
        spec["session"] = request.session
    if request.allow_status:
        spec["allow_status"] = list(request.allow_status)
    if request.proxy is not None:
        spec["proxy"] = request.proxy
    if request.dont_filter:
        spec["dont_filter"] = True
    if request.render is not None:
        spec["render"] = request.render
    if request.fetch_backend is not None:
        spec["fetch_backend"] = request.fetch_backend
    return json.dumps(spec, separators=(",", ":")) if spec else None
