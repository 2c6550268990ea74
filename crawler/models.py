"""Request and Response: the values spiders see. No I/O here; parsing is lazy and cached."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx
from selectolax.lexbor import LexborHTMLParser, LexborNode

from . import parser
from .urls import clean_href

#: A spider callback: a bound method taking a Response and yielding items and Requests.
Callback = Callable[["Response"], Any]


@dataclass(slots=True)  # not frozen: that made each Request 3x slower to build (~4% of a crawl)
class Request:
    """A URL to crawl and the spider method that parses it.

    `callback` defaults to the spider's `parse`; it must be a method of the spider, since it is
    stored by name so that a resumed crawl finds it again. `priority`: higher is fetched sooner
    among the URLs of one host. `meta` is stored with the request (it must be JSON-serializable)
    and comes back as `response.request.meta`. Non-HTML responses reach the callback only when
    `any_content_type` is true. `depth` is set by the crawler (start URLs are 0).
    """

    url: str
    callback: Callback | None = None
    priority: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    any_content_type: bool = field(default=False, kw_only=True)
    depth: int = field(default=0, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.url, str):
            raise TypeError(f"Request url must be a str, got {type(self.url).__name__}")
        if self.meta is None:
            self.meta = {}

    @property
    def callback_name(self) -> str:
        """The name the callback is stored under ("parse" when none was given)."""
        return self.callback.__name__ if self.callback is not None else "parse"


class Response:
    """A fetched page. `url` is the final URL after redirects; `headers` are case-insensitive."""

    __slots__ = ("_text", "_tree", "body", "headers", "nofollow", "request", "status", "url")

    def __init__(
        self, *, url: str, status: int, headers: httpx.Headers, body: bytes, request: Request
    ) -> None:
        self.url = url
        self.status = status
        self.headers = headers
        self.body = body
        self.request = request
        #: Whether links() leaves out rel="nofollow" links (set by the crawl's obey_nofollow).
        self.nofollow = True
        self._text: str | None = None
        self._tree: LexborHTMLParser | None = None

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.url}>"

    @property
    def depth(self) -> int:
        """Link depth of this page: 0 for start URLs, the parent's depth + 1 for followed links."""
        return self.request.depth

    @property
    def text(self) -> str:
        """The body decoded by the header charset, then `<meta charset>`, then detection."""
        if self._text is None:
            self._text = parser.decode(self.body, self.headers.get("content-type"))
        return self._text

    @property
    def tree(self) -> LexborHTMLParser:
        """The parsed HTML document (selectolax, Lexbor engine)."""
        if self._tree is None:
            self._tree = parser.parse_html(self.text)
        return self._tree

    def css(self, selector: str) -> list[LexborNode]:
        """Every node matching a CSS selector, in document order."""
        return self.tree.css(selector)

    def css_first(self, selector: str) -> LexborNode | None:
        """The first node matching a CSS selector, or None."""
        return self.tree.css_first(selector)

    def links(self) -> list[str]:
        """Absolute http(s) URLs of `<a href>`/`<area href>`, resolved against `<base href>`,
        fragments removed, without duplicates, in document order; rel="nofollow" links are
        left out while the crawl obeys nofollow (the default)."""
        return parser.extract_links(self.tree, self.url, nofollow=self.nofollow)

    @property
    def robots_directives(self) -> frozenset[str]:
        """ "noindex" and/or "nofollow", from `<meta name="robots">` and X-Robots-Tag."""
        header = self.headers.get("x-robots-tag")
        html = parser.is_html(self.headers.get("content-type"))
        return parser.robots_directives(self.tree if html else None, header)

    def urljoin(self, url: str) -> str:
        """`url` resolved against this page's base URL (`<base href>` or the page URL)."""
        return urljoin(parser.base_url(self.tree, self.url), clean_href(url))

    def follow(
        self,
        url: str | LexborNode,
        callback: Callback | None = None,
        priority: int = 0,
        meta: dict[str, Any] | None = None,
        *,
        any_content_type: bool = False,
    ) -> Request:
        """A Request for `url` (a string, or a node with an href) resolved against this page."""
        if isinstance(url, LexborNode):
            href = url.attributes.get("href")
            if not href:
                raise ValueError(f"follow() got a <{url.tag}> node without an href")
            url = href
        return Request(
            self.urljoin(url),
            callback=callback,
            priority=priority,
            meta=meta or {},
            any_content_type=any_content_type,
        )
