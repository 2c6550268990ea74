"""Request and Response: the values spiders see. No I/O here; parsing is lazy and cached."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from selectolax.lexbor import LexborHTMLParser, LexborNode

from . import extract, fingerprints, parser, urls
from .settings import FETCH_BACKENDS

if TYPE_CHECKING:
    from parsel import Selector, SelectorList

#: A spider callback: a bound method taking a Response and yielding items and Requests.
Callback = Callable[["Response"], Any]
#: A spider errback: a bound method taking the failed Request and its Failure, yielding items
#: and Requests like a callback.
Errback = Callable[["Request", "Failure"], Any]

_UNSET: Any = object()
_T = TypeVar("_T")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP method or header name


@dataclass(slots=True, init=False)  # not frozen: that made each Request 3x slower to build
class Request:
    """A request to make and the spider method that parses its response.

    `callback` defaults to the spider's `parse`; it must be a method of the spider, since it is
    stored by name so that a resumed crawl finds it again (so is `errback`). `priority`: higher
    is fetched sooner among the requests of one host. `meta` is stored with the request (it
    must be JSON-serializable) and comes back as `response.request.meta`.

    - `method`: any HTTP method; `headers` are merged over the crawl's defaults; `body` is
      bytes, or a str sent as UTF-8.
    - `cookies` are sent with this request and kept in its session's cookie jar; `session`
      names the jar (None: the spider's default jar). Jars are kept in the store.
    - `dont_filter`: fetched even when an identical request (method, URL, body) was seen.
    - `errback(request, failure)`: called when the request finally fails (see Failure).
    - `allow_status`: statuses >= 400 handed to the callback instead of failing the request.
    - `any_content_type`: non-HTML responses reach the callback too (JSON ones do anyway when
      the request's Accept header asks for JSON).
    - `proxy`: "http://user:pass@host:port" to send this request through.
    - `render`: load the page in a headless browser, so that its scripts run (None: as the
      spider's `render` says). The callback sees the rendered DOM, and an async callback
      may drive the live page through `response.page`.
    - `fetch_backend`: "default", "http2" or "impersonate" (see the setting) for this request
      (None: as its host's `host_settings`, else the crawl's `fetch_backend` says).
    - `depth` is set by the crawler (start requests are 0).

    Bad values are a TypeError or ValueError when the Request is built.
    """

    url: str
    callback: Callback | None
    priority: int
    meta: dict[str, Any]
    method: str
    headers: dict[str, str] | None
    body: bytes | None
    cookies: dict[str, str] | None
    session: str | None
    dont_filter: bool
    errback: Errback | None
    allow_status: tuple[int, ...]
    any_content_type: bool
    proxy: str | None
    render: bool | None
    fetch_backend: str | None
    depth: int

    def __init__(
        self,
        url: str,
        callback: Callback | None = None,
        priority: int = 0,
        meta: dict[str, Any] | None = None,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
        cookies: Mapping[str, str] | None = None,
        session: str | None = None,
        dont_filter: bool = False,
        errback: Errback | None = None,
        allow_status: Iterable[int] = (),
        any_content_type: bool = False,
        proxy: str | None = None,
        render: bool | None = None,
        depth: int = 0,
        fetch_backend: str | None = None,
    ) -> None:
        if not isinstance(url, str):
            raise TypeError(f"Request url must be a str, got {type(url).__name__}")
        # written out by hand: checks cost nothing for a plain GET, the common case
        self.url = url
        self.callback = callback
        self.priority = priority
        self.meta = {} if meta is None else meta
        self.method = method if method == "GET" else _method(method)
        self.headers = None if headers is None else _headers(headers)
        self.body = None if body is None else _body(body)
        self.cookies = None if cookies is None else _str_pairs(cookies, "cookies")
        self.session = None if session is None else _session(session)
        self.dont_filter = dont_filter
        self.errback = errback
        self.allow_status = http_statuses(allow_status) if allow_status else ()
        self.any_content_type = any_content_type
        self.proxy = None if proxy is None else _proxy(proxy)
        if render is not None and not isinstance(render, bool):
            raise TypeError(f"Request render must be True, False or None, got {render!r}")
        self.render = render
        self.depth = depth
        if fetch_backend is not None and fetch_backend not in FETCH_BACKENDS:
            raise ValueError(
                f"Request fetch_backend must be one of {', '.join(FETCH_BACKENDS)} or None, "
                f"got {fetch_backend!r}"
            )
        self.fetch_backend = fetch_backend

    @property
    def callback_name(self) -> str:
        """The name the callback is stored under ("parse" when none was given)."""
        return self.callback.__name__ if self.callback is not None else "parse"

    @property
    def errback_name(self) -> str | None:
        """The name the errback is stored under, if there is one."""
        return self.errback.__name__ if self.errback is not None else None

    def header(self, name: str) -> str | None:
        """The value of one of this request's own headers (case-insensitive), or None."""
        if self.headers:
            lowered = name.lower()
            for key, value in self.headers.items():
                if key.lower() == lowered:
                    return value
        return None


def _method(method: Any) -> str:
    if not isinstance(method, str) or not _TOKEN.match(method):
        raise ValueError(f"Request method must be an HTTP method, got {method!r}")
    return method.upper()


def _body(body: Any) -> bytes:
    if isinstance(body, str):
        return body.encode()
    if not isinstance(body, bytes):
        raise TypeError(f"Request body must be bytes or str, got {type(body).__name__}")
    return body


def _headers(headers: Any) -> dict[str, str]:
    checked = _str_pairs(headers, "headers")
    for name, value in checked.items():
        if not _TOKEN.match(name) or "\r" in value or "\n" in value:
            raise ValueError(f"Request header {name!r}: {value!r} is not a valid header")
    return checked


def _session(session: Any) -> str:
    if not isinstance(session, str) or not session:
        raise ValueError(f"Request session must be a non-empty str, got {session!r}")
    return session


def _proxy(proxy: Any) -> str:
    if not isinstance(proxy, str) or not proxy.startswith(("http://", "https://")):
        raise ValueError(f"Request proxy must be an http:// or https:// URL: {proxy!r}")
    return proxy


def _str_pairs(pairs: Any, what: str) -> dict[str, str]:
    if not isinstance(pairs, Mapping):
        raise TypeError(f"Request {what} must be a dict of str to str, got {type(pairs).__name__}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in pairs.items()):
        raise TypeError(f"Request {what} must map str to str: {dict(pairs)!r}")
    return dict(pairs)


def http_statuses(statuses: Any) -> tuple[int, ...]:
    """HTTP statuses, sorted and without duplicates; a ValueError for anything else."""
    if isinstance(statuses, int) or not all(
        isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in statuses
    ):
        raise ValueError(f"allow_status must list HTTP statuses, got {statuses!r}")
    return tuple(sorted(set(statuses)))


#: The Accept header of a JsonRequest (as Scrapy sends it).
JSON_ACCEPT = "application/json, text/javascript, */*; q=0.01"


class JsonRequest(Request):
    """A request to a JSON API: `data`, when given, is sent as a JSON body (and the method is
    POST unless another is given), with JSON Content-Type and Accept headers. The JSON response
    reaches the callback (`response.json()`)."""

    __slots__ = ()

    def __init__(self, url: str, data: Any = None, **kwargs: Any) -> None:
        headers = dict(kwargs.pop("headers", None) or {})
        if data is not None:
            if kwargs.get("body") is not None:
                raise ValueError("JsonRequest takes `data` or `body`, not both")
            try:
                kwargs["body"] = json.dumps(data, ensure_ascii=False).encode()
            except (TypeError, ValueError) as exc:
                raise ValueError(f"JsonRequest data is not JSON-serializable: {exc}") from None
            kwargs.setdefault("method", "POST")
            _set_default(headers, "Content-Type", "application/json")
        _set_default(headers, "Accept", JSON_ACCEPT)
        super().__init__(url, headers=headers, **kwargs)


class FormRequest(Request):
    """A form submission: `formdata` (a dict, values str or lists of str, or (name, value)
    pairs) is sent urlencoded, as the body of a POST (the default) or as the query string of
    a GET. `FormRequest.from_response(response, ...)` submits a form found on a page."""

    __slots__ = ()

    def __init__(self, url: str, formdata: Any = None, **kwargs: Any) -> None:
        headers = dict(kwargs.pop("headers", None) or {})
        kwargs.setdefault("method", "POST")
        if formdata is not None:
            if kwargs.get("body") is not None:
                raise ValueError("FormRequest takes `formdata` or `body`, not both")
            encoded = urlencode(_form_pairs(formdata))
            if str(kwargs["method"]).upper() == "GET":
                url = urlunsplit(urlsplit(url)._replace(query=encoded))
            else:
                kwargs["body"] = encoded.encode()
                _set_default(headers, "Content-Type", "application/x-www-form-urlencoded")
        super().__init__(url, headers=headers or None, **kwargs)

    @classmethod
    def from_response(
        cls,
        response: Response,
        formdata: Any = None,
        formcss: str | None = None,
        formid: str | None = None,
        formname: str | None = None,
        formnumber: int = 0,
        clickdata: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> FormRequest:
        """Submit a form of `response`, as a browser would: its hidden inputs (CSRF tokens) and
        default values, its `action` and `method`, with `formdata` overriding fields by name
        (None as a value removes one). The form is the first matching `formcss`, `formid` or
        `formname`, else number `formnumber`; a ValueError lists the page's forms when there
        is no such form. The first submit button is clicked (sent with its name and value),
        or the one whose attributes match `clickdata`. The request stays in the page's session
        unless another is given."""
        from .page.forms import find_form, form_fields

        form = find_form(response.tree, css=formcss, id=formid, name=formname, number=formnumber)
        fields = form_fields(form, clickdata=clickdata)
        names = set()
        if formdata is not None:
            overrides = _form_pairs(formdata, keep_none=True)
            names = {name for name, _ in overrides}
            fields = [(n, v) for n, v in fields if n not in names]
            fields += [(n, v) for n, v in overrides if v is not None]
        action = form.attributes.get("action") or ""
        url = response.urljoin(action.strip()) if action.strip() else response.url
        method = (form.attributes.get("method") or "GET").strip().upper()
        kwargs.setdefault("method", "POST" if method == "POST" else "GET")
        kwargs.setdefault("session", response.request.session)
        return cls(url.split("#", 1)[0], formdata=fields, **kwargs)


def _set_default(headers: dict[str, str], name: str, value: str) -> None:
    if not any(key.lower() == name.lower() for key in headers):
        headers[name] = value


def _form_pairs(formdata: Any, *, keep_none: bool = False) -> list[tuple[str, Any]]:
    """(name, value) pairs from a dict (values str, or lists of str) or an iterable of pairs."""
    items = formdata.items() if isinstance(formdata, Mapping) else formdata
    pairs: list[tuple[str, Any]] = []
    for name, value in items:
        values = value if isinstance(value, list | tuple) else [value]
        for one in values:
            if one is None and keep_none:
                pairs.append((str(name), None))
            elif not isinstance(one, str | int | float) or isinstance(one, bool):
                raise TypeError(f"form field {name!r}: values must be str, got {one!r}")
            else:
                pairs.append((str(name), str(one)))
    return pairs


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a request finally failed, for its errback: the error `kind` (as recorded: "timeout",
    "http_status", ...), a `message`, the HTTP `status` when there was one, and the `response`
    when the server sent one (an error status: its body is there)."""

    request: Request
    kind: str
    message: str
    status: int | None = None
    response: Response | None = None


class Response:
    """A fetched page. `url` is the final URL after redirects; `headers` are case-insensitive."""

    __slots__ = (
        "_base",
        "_extractions",
        "_json",
        "_selector",
        "_text",
        "_tree",
        "body",
        "cached",
        "duplicate_of",
        "headers",
        "nofollow",
        "rendered",
        "request",
        "status",
        "url",
    )

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
        #: Whether the HTTP cache answered (the http_cache setting): no request went out.
        self.cached = False
        #: How the browser rendered this response (browser.Rendered), if it did.
        self.rendered: Any = None
        #: The URL of a page crawled before whose body this one repeats, or whose text it
        #: nearly does (the duplicates setting; None: it repeats none, or nobody looked).
        self.duplicate_of: str | None = None
        self._text: str | None = None
        self._tree: LexborHTMLParser | None = None
        self._base: urls.Base | None = None
        self._json: Any = _UNSET
        self._selector: Selector | None = None
        self._extractions: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.url}>"

    @property
    def page(self) -> Any:
        """The live browser page (Playwright's Page) of a rendered response, while its callback
        runs: click, scroll, wait for a selector, then read `await page.content()`. None when
        the response was not rendered, or once its callback has returned."""
        rendered = self.rendered
        if rendered is None:
            return None
        rendered.used = True  # user code may have changed it: it is closed, not reused
        return rendered.page

    async def update(self) -> None:
        """Read the live page's DOM again (after the callback clicked or scrolled through
        `page`), so that `text`, `css()`, `xpath()` and `links()` see what it shows now. A
        RuntimeError when the response has no live page."""
        page = self.page
        if page is None:
            raise RuntimeError(
                "response.update() needs a rendered response (render=True), in its callback"
            )
        html: str = await page.content()
        self.body = html.encode()
        self._text = html
        self._tree = None
        self._base = None
        self._json = _UNSET
        self._selector = None

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

    def json(self) -> Any:
        """The body parsed as JSON (UTF-8, -16 or -32, as RFC 8259 allows); a ValueError when
        it is not JSON."""
        if self._json is _UNSET:
            try:
                self._json = json.loads(self.body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise ValueError(f"{self.url} is not JSON: {exc}") from None
        return self._json

    @property
    def selector(self) -> Selector:
        """A parsel Selector over the page (built on first use): XPath, `::text` and
        `::attr()` CSS, `.re()`, as in Scrapy. `.css()` stays selectolax, the fast path."""
        if self._selector is None:
            from parsel import Selector  # 70 ms to import: only for spiders that use it

            self._selector = Selector(text=self.text, base_url=self.url)
        return self._selector

    def xpath(self, query: str, **variables: Any) -> SelectorList[Selector]:
        """Every match of an XPath query (`$name` variables from keyword arguments)."""
        return self.selector.xpath(query, **variables)

    def css(self, selector: str) -> list[LexborNode]:
        """Every node matching a CSS selector, in document order. Scrapy's `::text` and
        `::attr(name)` are parsel's: a ValueError names the call that takes them."""
        _no_pseudo_element(selector, "css")
        return self.tree.css(selector)

    def css_first(self, selector: str) -> LexborNode | None:
        """The first node matching a CSS selector, or None (no `::text`, as `css`)."""
        _no_pseudo_element(selector, "css_first")
        return self.tree.css_first(selector)

    def links(self) -> list[str]:
        """Absolute http(s) URLs of `<a href>`/`<area href>`, resolved against `<base href>`,
        fragments removed, without duplicates, in document order; rel="nofollow" links are
        left out while the crawl obeys nofollow (the default)."""
        return parser.extract_links(self.tree, self.url, nofollow=self.nofollow)

    def markdown(self) -> str:
        """The page's main content as Markdown: headings, lists, links, tables and code kept;
        navigation, footers, sidebars, cookie banners and ads left out ("" when the page has
        no main content). trafilatura, from the `extract` extra (see crawler/extract.py)."""
        return self._extracted(
            "markdown", lambda: extract.main_content(self.text, self.url, "markdown")
        )

    def main_html(self) -> str:
        """The page's main content as HTML (as `markdown()` picks it)."""
        return self._extracted("html", lambda: extract.main_content(self.text, self.url, "html"))

    def main_text(self) -> str:
        """The page's main content as plain text (as `markdown()` picks it)."""
        return self._extracted("text", lambda: extract.main_content(self.text, self.url, "text"))

    def metadata(self) -> dict[str, str | None]:
        """title, description, language, author, published (YYYY-MM-DD), canonical_url and
        site_name, each None where the page does not say."""
        return self._extracted("metadata", lambda: extract.metadata(self.text, self.url))

    def structured_data(self) -> dict[str, list[Any]]:
        """The page's JSON-LD, microdata, OpenGraph and RDFa ("json-ld", "microdata",
        "opengraph", "rdfa"), each a list of plain dicts (extruct's uniform shape)."""
        return self._extracted("structured", lambda: extract.structured_data(self.text, self.url))

    def js_object(self, name: str | None = None) -> Any:
        """The JSON or JavaScript object literal assigned to `name` in the page's scripts
        (`js_object("window.__INITIAL_STATE__")`; unquoted keys, single quotes, trailing
        commas are read as a browser would), or without a name the first one in a script;
        None when there is none."""
        scripts = [node.text(deep=True) for node in self.css("script")]
        return extract.js_object(scripts, name)

    def fingerprint(self) -> bytes | None:
        """The MinHash signature of the page's visible text (crawler/fingerprints.py; None for
        a page without words): `fingerprints.similarity(a, b)` estimates the share of 3-word
        shingles two pages have in common (0.9 or more: near-duplicates). No extra needed;
        ~0.3 ms for a 500-word page."""
        return self._extracted(
            "fingerprint", lambda: fingerprints.signature(parser.visible_text(self.tree))
        )

    def _extracted(self, what: str, make: Callable[[], _T]) -> _T:
        """`make()`'s result, made once per response."""
        done = self._extractions
        if done is None:
            done = self._extractions = {}
        if what not in done:
            done[what] = make()
        return done[what]  # type: ignore[no-any-return]

    @property
    def robots_directives(self) -> frozenset[str]:
        """ "noindex" and/or "nofollow", from `<meta name="robots">` and X-Robots-Tag."""
        header = self.headers.get("x-robots-tag")
        html = parser.is_html(self.headers.get("content-type"))
        return parser.robots_directives(self.tree if html else None, header)

    def urljoin(self, url: str) -> str:
        """`url` resolved against this page's base URL (`<base href>` or the page URL) as a
        browser resolves it (URL Standard; see `crawler.urls.join`)."""
        if self._base is None:
            self._base = urls.Base(parser.base_url(self.tree, self.url))
        return self._base.join(url)

    def follow(
        self,
        url: str | LexborNode,
        callback: Callback | None = None,
        priority: int = 0,
        meta: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Request:
        """A Request for `url` (a string, or a node with an href) resolved against this page;
        `kwargs` are Request's (method, headers, session...). The session stays this
        request's unless another is given."""
        if isinstance(url, LexborNode):
            href = url.attributes.get("href")
            if not href:
                raise ValueError(f"follow() got a <{url.tag}> node without an href")
            url = href
        kwargs.setdefault("session", self.request.session)
        return Request(self.urljoin(url), callback, priority, meta or {}, **kwargs)


_PSEUDO_ELEMENT = re.compile(r"::(text|attr\(\s*([^)]*?)\s*\))\s*$")


def _no_pseudo_element(selector: str, method: str) -> None:
    """Scrapy's pseudo-elements are not CSS that selectolax knows: say in one line which call
    takes them (parsel's, as in Scrapy) and how to read the same from selectolax's nodes."""
    if "::" not in selector:
        return
    match = _PSEUDO_ELEMENT.search(selector)
    base = selector[: match.start()] if match else selector.split("::", 1)[0]
    read = f"attributes.get({match.group(2)!r})" if match and match.group(2) else "text()"
    if method == "css_first":
        get, nodes = "get()", f"response.css_first({base!r}).{read}"
    else:
        get, nodes = "getall()", f"[n.{read} for n in response.css({base!r})]"
    raise ValueError(
        f"response.{method}({selector!r}): ::text and ::attr() are Scrapy's (parsel's), not "
        f"selectolax's: use response.selector.css({selector!r}).{get}, or read the nodes: "
        f"{nodes}"
    )
