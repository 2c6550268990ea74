"""Links resolved as a browser resolves them: the web-platform-tests URL cases (the suite every
browser's URL parser is held to; tests/data/urltestdata.json, see tests/data/README.md).

A case a crawler can meet is one whose base is an http(s) URL (a page at the base holds
`<a href=INPUT>`) or, without a base, whose input is an absolute http(s) URL (a start URL, a
Request). The crawler agrees with the browser when it requests the browser's `href` (without
its fragment, which is never sent); when the suite says the browser fails, or the link leads to
another scheme, the crawler finds no link. Every case it knowingly differs on is listed in
DIFFERENCES with the reason.
"""

from __future__ import annotations

import html
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import ada_url
import pytest
from aiohttp import web

from crawler import Crawler, Request, Response, Settings, Spider
from crawler.parser import extract_links, parse_html
from crawler.urls import Base, Canonicalizer, canonicalize, resolve, split_url
from tests.sites import serve

DATA = Path(__file__).parent / "data" / "urltestdata.json"
CASES: list[dict[str, Any]] = [c for c in json.loads(DATA.read_text()) if isinstance(c, dict)]
HTTP = ("http:", "https:")
#: (input, base) -> why the crawler knowingly differs from the browser. None today.
DIFFERENCES: dict[tuple[str, str | None], str] = {}


def browser(case: dict[str, Any]) -> str | None:
    """What the browser requests for the case: its href without the fragment, or None (it fails
    to parse, or the URL is not http(s))."""
    if case.get("failure"):
        return None
    href: str = case["href"]
    return href.partition("#")[0] if href.startswith(HTTP) else None


def link_cases() -> list[dict[str, Any]]:
    return [c for c in CASES if (c.get("base") or "").startswith(HTTP)]


def absolute_cases() -> list[dict[str, Any]]:
    def absolute(text: str) -> bool:
        bare = text.strip("".join(map(chr, range(0x21)))).replace("\t", "").replace("\n", "")
        return bare.lower().startswith(HTTP)

    return [c for c in CASES if c.get("base") is None and absolute(c["input"])]


def page_link(case: dict[str, Any], *, base_tag: bool = False) -> str | None:
    """The link the crawler extracts from a page at the case's base holding `<a href=INPUT>`
    (with `base_tag`, from a page elsewhere whose `<base href>` is the case's base)."""
    base = split_url(case["base"])
    assert base is not None, case
    anchor = f'<a href="{html.escape(case["input"])}">x</a>'
    if base_tag:
        page = f'<head><base href="{html.escape(base[0])}"></head>{anchor}'
        links = extract_links(parse_html(page), "http://elsewhere.test/some/page.html")
    else:
        links = extract_links(parse_html(anchor), base[0])
    assert len(links) <= 1
    return links[0] if links else None


def requested(case: dict[str, Any]) -> str | None:
    split = split_url(case["input"])
    return split[0] if split else None


def test_the_suite_is_whole() -> None:
    assert len(CASES) > 850
    assert len(link_cases()) >= 200
    assert len(absolute_cases()) >= 250


def test_links_agree_with_the_browser_on_the_whole_suite() -> None:
    cases = [(c, page_link) for c in link_cases()] + [(c, None) for c in absolute_cases()]
    differing = {}
    for case, _ in cases:
        found = page_link(case) if case.get("base") else requested(case)
        if found != browser(case):
            differing[case["input"], case.get("base")] = f"{found!r}, browser {browser(case)!r}"
    agreement = 1 - len(differing) / len(cases)
    unexplained = {k: v for k, v in differing.items() if k not in DIFFERENCES}
    assert not unexplained, f"agreement {agreement:.2%}; differs on {unexplained}"
    assert agreement >= 0.995
    stale = set(DIFFERENCES) - set(differing)
    assert not stale, f"these now agree: remove them from DIFFERENCES: {stale}"


def test_base_href_gives_the_same_links() -> None:
    for case in link_cases():
        assert page_link(case, base_tag=True) == browser(case), case


def test_the_suite_covers_idna_ipv6_and_ipv4_hosts() -> None:
    """The same file holds the host cases: IDNA (UTS #46), IPv6, IPv4 in every spelling."""
    crawlable = [c for c in link_cases() + absolute_cases() if browser(c)]
    idna = [c for c in crawlable if "xn--" in c["hostname"] and "xn--" not in c["input"]]
    ipv6 = [c for c in crawlable if c["hostname"].startswith("[")]
    ipv4 = [c for c in crawlable if c["hostname"].replace(".", "").isdigit()]
    numeric = [c for c in ipv4 if c["hostname"] not in c["input"]]  # spelled otherwise
    failing = [c for c in link_cases() + absolute_cases() if c.get("failure")]
    assert (len(idna), len(ipv6), len(ipv4), len(numeric)) >= (5, 10, 15, 10)
    assert len(failing) >= 50


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://faß.de/", "xn--fa-hia.de"),  # UTS #46 nontransitional, as browsers
        ("http://\uff27\uff2f.com/", "go.com"),  # full-width letters mapped
        ("http://www.example。com/", "www.example.com"),  # ideographic full stop
        ("http://xn--nxasmq6b.com/", "xn--nxasmq6b.com"),
        ("http://例え.テスト/", "xn--r8jz45g.xn--zckzah"),
        ("http://[::ffff:1.2.3.4]/", "::ffff:102:304"),
        ("http://[0:0:0:0:0:0:0:1]:8080/", "::1"),
        ("http://0x7f.1/", "127.0.0.1"),
        ("http://2130706433/", "127.0.0.1"),
    ],
)
def test_hosts_as_the_url_standard_reads_them(url: str, host: str) -> None:
    split = split_url(url)
    assert split is not None
    assert split[1] == host


@pytest.mark.parametrize(
    "url",
    [
        "http://a b.com/",
        "http://[1::2::3]/",
        "http://1.2.3.4.5/",
        "http://ex%00ample.com/",
        "http://a.com:99999/",
    ],
)
def test_hosts_a_browser_refuses_give_no_url(url: str) -> None:
    assert split_url(url) is None
    assert Canonicalizer().invalid(url) is not None  # recorded with the reason


# -- the fast path gives the parser's answer -------------------------------------------------

PIECES = [
    "", "/", "//", "a", "B", "é", "%", "%2e", "%2E", "%7e", "%41", ".", "..", "?", "#", ":",
    "@", "[", "]", "^", "|", "{", "}", "`", "'", '"', "\\", " ", "\t", "x.html", "http:",
    "https://", "HTTP://", "127.0.0.1", "0x7f.1", "1.2.3.256", "xn--", "xn--bcher-kva", ":80",
    ":443", ":8080", ":0", ":99999", "~", ";", "=", "&", "+", "$", "*", "(", ")", ",", "-",
    "example.com", "a.b.", "mailto:", "javascript:", "<", ">", "\x00", "\u3002",
]  # fmt: skip
BASES = [
    "http://example.com/dir/page.html?q=1",
    "https://a.b:8443/",
    "http://127.0.0.1/x/y/",
    "http://u:p@h.com/p?x#frag",
    "http://[::1]/a",
]


def by_the_parser(base: str, href: str) -> str | None:
    try:
        url = ada_url.join_url(base, href)
    except ValueError:
        return None
    return url.partition("#")[0] if url.startswith(("http://", "https://")) else None


def test_the_fast_path_gives_the_parsers_answer() -> None:
    rng = random.Random(2026)
    for _ in range(30000):
        href = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 7)))
        if rng.random() < 0.3:
            href = rng.choice(["http://", "https://", "/", ""]) + href
        base = rng.choice(BASES)
        assert resolve(base, href) == by_the_parser(base, href), (base, href)
        absolute = "http://" + href
        try:
            parsed: str | None = ada_url.normalize_url(absolute).partition("#")[0]
        except ValueError:
            parsed = None
        split = split_url(absolute)
        assert (split[0] if split else None) == parsed, absolute


def test_plain_links_resolve_without_the_parser() -> None:
    base = Base("http://example.com/dir/page.html?q=1#f")
    assert base.resolve("/a/b.html") == "http://example.com/a/b.html"
    assert base.resolve("c.html#x") == "http://example.com/dir/c.html"
    assert base.resolve("?page=2") == "http://example.com/dir/page.html?page=2"
    assert base.resolve("#top") == "http://example.com/dir/page.html?q=1"
    assert base.resolve("https://other.org:8443/x?y=[1]") == "https://other.org:8443/x?y=[1]"


# -- the canonical form is for deduplication only ----------------------------------------------


def test_the_canonical_form_only_merges_equivalent_urls() -> None:
    """Escapes of unreserved characters decoded, the others uppercased: the same resource by
    RFC 3986. Everything else (a lone %, brackets, the query) as requested."""
    assert (
        canonicalize("http://a.com/%7euser/%2f%3F?q=%41%2b") == "http://a.com/~user/%2F%3F?q=A%2B"
    )
    assert canonicalize("http://a.com/100%/[x]?|") == "http://a.com/100%/[x]?|"
    for case in link_cases() + absolute_cases():
        url = browser(case)
        if url:
            key = canonicalize(url)
            assert key is not None
            assert canonicalize(key) == key  # stable
            assert split_url(key) == (key, split_url(url)[1])  # type: ignore[index]


class Links(Spider):
    name = "links"

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        for url in response.links():
            yield Request(url)


async def test_the_server_gets_the_url_a_browser_sends(tmp_path: Path) -> None:
    """The request line carries the browser's URL, never requoted; links with one canonical
    form are fetched once, as the first one was written."""
    got: list[str] = []
    links = [
        "/a[1]/",
        "/100%",
        "/q?x=|^{}`",
        "/~user/",
        "/%7Euser/",
        "/%7euser/",
        "/sp ace",
        "/caf\u00e9",
        "/x/%2e%2E/y",
        "/t?utm_source=a&id=1",
        "/t?id=1&utm_source=b",
        "/AB",
        "/%41%42",
    ]

    async def handle(request: web.Request) -> web.StreamResponse:
        got.append(request.raw_path)
        body = "".join(f'<a href="{html.escape(link)}">x</a>' for link in links)
        return web.Response(text=body if request.path == "/" else "leaf", content_type="text/html")

    runners: list[web.AppRunner] = []
    try:
        port = (await serve(handle, ["127.0.0.31"], runners))["127.0.0.31"]
        spider = Links()
        spider.start_urls = [f"http://127.0.0.31:{port}/"]
        settings = Settings(
            obey_robots=False, strip_tracking_params=True, sort_query=True, concurrency=1
        )
        stats = await Crawler(spider, settings, store_path=tmp_path / "c.db").run()
    finally:
        for runner in runners:
            await runner.cleanup()
    assert stats.ended == "complete"
    assert sorted(got) == sorted(
        [
            "/",
            "/a[1]/",
            "/100%",
            "/q?x=|^{}`",
            "/~user/",
            "/sp%20ace",
            "/caf%C3%A9",
            "/y",
            "/t?utm_source=a&id=1",
            "/AB",
        ]
    )


def test_tracking_parameters_are_left_in_the_request() -> None:
    clean = Canonicalizer(strip_tracking=True)
    split = clean.split("http://a.com/p?utm_source=x&id=1")
    assert split == ("http://a.com/p?utm_source=x&id=1", "a.com")
    assert clean.key(split[0]) == "http://a.com/p?id=1"
