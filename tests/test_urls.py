import pytest

from crawler.parser import extract_links, parse_html
from crawler.urls import (
    Canonicalizer,
    InvalidHost,
    Scope,
    TrapGuard,
    canonical_domain,
    canonicalize,
    host_of,
    split_url,
)

CANONICAL = [
    # scheme and host case, default ports, empty path, fragment
    ("HTTP://Example.COM/Path?Q=A", "http://example.com/Path?Q=A"),
    ("http://example.com", "http://example.com/"),
    ("http://example.com:80/a", "http://example.com/a"),
    ("https://example.com:443/a", "https://example.com/a"),
    ("https://example.com:8443/a", "https://example.com:8443/a"),
    ("http://example.com:443/a", "http://example.com:443/a"),
    ("http://example.com/a#section", "http://example.com/a"),
    ("http://example.com/a?b=1&a=2#x", "http://example.com/a?b=1&a=2"),
    ("http://example.com/a?", "http://example.com/a"),
    ("http://example.com/#only-fragment", "http://example.com/"),
    # whitespace and controls, as browsers strip them
    ("  http://example.com/a  ", "http://example.com/a"),
    ("\x00\x1f http://example.com/a\x0c", "http://example.com/a"),
    ("http://exa\tmple.com/a\nb", "http://example.com/ab"),
    ("http://example.com/a\r\nb?c=\td", "http://example.com/ab?c=d"),
    # backslashes read as slashes before the query, kept in the query
    ("http:\\\\example.com\\a\\b", "http://example.com/a/b"),
    ("http://example.com\\a?x=\\y", "http://example.com/a?x=\\y"),
    # dot segments
    ("http://example.com/a/./b/../c", "http://example.com/a/c"),
    ("http://example.com/a/b/..", "http://example.com/a/"),
    ("http://example.com/../../x", "http://example.com/x"),
    ("http://example.com/a/.", "http://example.com/a/"),
    ("http://example.com/a/..b/.c", "http://example.com/a/..b/.c"),
    # percent-encoding
    ("http://example.com/%7Euser", "http://example.com/~user"),
    ("http://example.com/%7euser/%2f", "http://example.com/~user/%2F"),
    ("http://example.com/a%2Fb", "http://example.com/a%2Fb"),
    ("http://example.com/%41%42c", "http://example.com/ABc"),
    ("http://example.com/a b", "http://example.com/a%20b"),
    ("http://example.com/a%20b", "http://example.com/a%20b"),
    ("http://example.com/?q=a b", "http://example.com/?q=a%20b"),
    ("http://example.com/?q=a+b&r=%2b", "http://example.com/?q=a+b&r=%2B"),
    ("http://example.com/100%", "http://example.com/100%"),  # a lone "%" stays, as browsers send it
    ("http://example.com/%zz", "http://example.com/%zz"),
    ("http://example.com/a[1]|b?q=[x]^", "http://example.com/a[1]|b?q=[x]^"),
    ("http://example.com/a^b/{c}", "http://example.com/a%5Eb/%7Bc%7D"),
    ("http://example.com/?q=it's", "http://example.com/?q=it%27s"),
    ("http://example.com/a/%2e%2E/b/%2e", "http://example.com/b/"),
    ("http://test:@example.com/", "http://test@example.com/"),
    ("http://\u00fcser:p\u00e4ss@example.com/", "http://%C3%BCser:p%C3%A4ss@example.com/"),
    ("https:example.com/x", "https://example.com/x"),
    ("http://example.com/caf\u00e9", "http://example.com/caf%C3%A9"),
    ('http://example.com/"quoted"', "http://example.com/%22quoted%22"),
    ("http://example.com/path;params", "http://example.com/path;params"),
    ("http://example.com/a?x=1&x=2&y", "http://example.com/a?x=1&x=2&y"),
    # IDNA hosts
    ("http://b\u00fccher.de/", "http://xn--bcher-kva.de/"),
    ("http://B\u00dcCHER.de/", "http://xn--bcher-kva.de/"),
    ("http://xn--bcher-kva.de/", "http://xn--bcher-kva.de/"),
    ("http://\u4f8b\u3048.jp/", "http://xn--r8jz45g.jp/"),
    # IP hosts, userinfo
    ("http://[::1]:8080/x", "http://[::1]:8080/x"),
    ("http://[2001:DB8::1]/", "http://[2001:db8::1]/"),
    ("http://127.0.0.1:80/", "http://127.0.0.1/"),
    ("http://user:pw@Example.com/", "http://user:pw@example.com/"),
    # IPv4 addresses in every spelling a browser reads (URL Standard), IPv6 compressed
    ("http://2130706434/", "http://127.0.0.2/"),
    ("http://0x7f000002/", "http://127.0.0.2/"),
    ("http://0X7F.0.0.2/", "http://127.0.0.2/"),
    ("http://0177.0.0.2/", "http://127.0.0.2/"),
    ("http://127.2/", "http://127.0.0.2/"),
    ("http://127.0.2/", "http://127.0.0.2/"),
    ("http://127.0.0.2./", "http://127.0.0.2/"),
    ("http://%31%32%37.0.0.2/", "http://127.0.0.2/"),
    ("http://\uff11\uff12\uff17.0.0.2/", "http://127.0.0.2/"),
    ("http://0x/", "http://0.0.0.0/"),
    ("http://4294967295/", "http://255.255.255.255/"),
    ("http://[0:0:0:0:0:0:0:1]/", "http://[::1]/"),
    ("http://[::FFFF:127.0.0.1]/", "http://[::ffff:7f00:1]/"),
    ("http://[1:0:0:1:0:0:0:1]/", "http://[1:0:0:1::1]/"),
    ("http://[1:0:1:1:1:1:1:1]/", "http://[1:0:1:1:1:1:1:1]/"),
    ("http://example.123abc/", "http://example.123abc/"),  # not a number: a name
    # not crawlable
    ("ftp://example.com/", None),
    ("mailto:a@b.c", None),
    ("javascript:alert(1)", None),
    ("/relative/path", None),
    ("//example.com/protocol-relative", None),
    ("http:///nohost", "http://nohost/"),  # as browsers read it
    ("http://", None),
    ("http://example.com:99999/", None),
    ("http://exa mple.com/", None),
    # hosts a browser rejects as IPv4 addresses
    ("http://1.2.3.256/", None),
    ("http://1.2.3.4.5/", None),
    ("http://0x100000000/", None),
    ("http://256.0.0.1/", None),
    ("http://09.0.0.1/", None),
    ("http://1..2/", None),
    ("http://foo.1/", None),
    ("http://[fe80::1%25eth0]/", None),
]


@pytest.mark.parametrize(("url", "canonical"), CANONICAL)
def test_canonicalize(url: str, canonical: str | None) -> None:
    assert canonicalize(url) == canonical


def test_the_table_is_large_enough() -> None:
    assert len(CANONICAL) >= 60


@pytest.mark.parametrize(
    ("url", "invalid"),
    [
        ("http://1.2.3.256/x", ("http://1.2.3.256/x", "1.2.3.256", "a part is out of range")),
        ("HTTP://Foo.1/", ("HTTP://Foo.1/", "foo.1", "'foo' is not a number")),
        ("http://0177.0.0.09/", ("http://0177.0.0.09/", "0177.0.0.09", "'09' is not a number")),
        ("https://a.com:99999/", ("https://a.com:99999/", "a.com", "bad port")),
        ("http://", ("http://", "", "the URL has no host")),
        ("http://exa mple.com/", ("http://exa mple.com/", "exa mple.com", "no host may have")),
        ("http://a.com/", None),  # fine
        ("mailto:a@b.c", None),  # not http(s)
        ("/relative", None),
    ],
)
def test_invalid_urls_say_why(url: str, invalid: tuple[str, str, str] | None) -> None:
    found = Canonicalizer().invalid(url)
    if invalid is None:
        assert found is None
    else:
        assert found is not None
        assert found[:2] == invalid[:2]
        assert invalid[2] in found[2]


def test_allowed_domains_name_canonical_hosts() -> None:
    assert canonical_domain("Example.COM.") == "example.com"
    assert canonical_domain("0x7f000003") == "127.0.0.3"
    assert canonical_domain("[0:0::1]") == "::1"
    with pytest.raises(InvalidHost, match="out of range"):
        canonical_domain("1.2.3.256")
    scope = Scope.of(start_hosts=["127.0.0.2"], allowed_domains=["2130706435"])
    assert scope.allows("http://127.0.0.3/", "127.0.0.3")


HREFS = [
    # (href as written in a page at http://example.com/dir/page.html, canonical link)
    ("//other.org/x", "http://other.org/x"),
    ("\\\\other.org\\x", "http://other.org/x"),
    ("..\\up.html", "http://example.com/up.html"),
    ("  next.html\n", "http://example.com/dir/next.html"),
    ("ne\txt.html", "http://example.com/dir/next.html"),
    ("my%20file.html", "http://example.com/dir/my%20file.html"),
    ("my file.html", "http://example.com/dir/my%20file.html"),
    ("?page=2", "http://example.com/dir/page.html?page=2"),
    ("./a/../b.html#frag", "http://example.com/dir/b.html"),
    ("HTTPS://B\u00dcCHER.DE", "https://xn--bcher-kva.de/"),
]


@pytest.mark.parametrize(("href", "canonical"), HREFS)
def test_hrefs_resolve_like_a_browser(href: str, canonical: str) -> None:
    tree = parse_html(f'<a href="{href}">x</a>')
    (link,) = extract_links(tree, "http://example.com/dir/page.html")
    assert canonicalize(link) == canonical


def test_optional_query_clean_up() -> None:
    clean = Canonicalizer(strip_tracking=True, strip_params=frozenset({"sid"}), sort_query=True)
    url = "http://a.com/p?utm_source=x&b=2&sid=9&fbclid=z&a=1&utm_medium=y"
    assert clean.split(url) == (url, "a.com")  # requested as written
    assert clean.key(url) == "http://a.com/p?a=1&b=2"  # one request with any such query
    assert clean.key("http://a.com/p?utm_source=x") == "http://a.com/p"
    assert canonicalize(url) == url  # off by default


def test_split_url_gives_the_host_key() -> None:
    assert split_url("https://WWW.Example.com:8080/x") == (
        "https://www.example.com:8080/x",
        "www.example.com",
    )
    assert host_of("nope") is None


def test_default_scope_is_the_start_hosts_exactly() -> None:
    scope = Scope.of(start_hosts=["example.com"], allowed_domains=None)
    assert scope.allows_host("example.com")
    assert not scope.allows_host("www.example.com")
    assert not scope.allows_host("other.org")


def test_allowed_domains_include_subdomains() -> None:
    scope = Scope.of(start_hosts=["x.org"], allowed_domains=["Example.com"])
    assert scope.allows_host("example.com")
    assert scope.allows_host("a.b.example.com")
    assert not scope.allows_host("badexample.com")
    assert not scope.allows_host("x.org")


def test_empty_allowed_domains_allow_any_host() -> None:
    assert Scope.of(start_hosts=["x.org"], allowed_domains=[]).allows_host("anything.net")


def test_scope_strategies_and_patterns() -> None:
    same_domain = Scope.of(
        start_hosts=["www.example.co.uk"], allowed_domains=None, strategy="same-domain"
    )
    assert same_domain.allows_host("shop.example.co.uk")
    assert not same_domain.allows_host("other.co.uk")
    assert Scope.of(start_hosts=["a.com"], allowed_domains=None, strategy="any").allows_host(
        "b.org"
    )
    patterned = Scope.of(
        start_hosts=["a.com"], allowed_domains=None, allow=[r"/(shop|blog)/"], deny=[r"\?sort="]
    )
    assert patterned.allows("http://a.com/shop/1", "a.com")
    assert not patterned.allows("http://a.com/shop/1?sort=asc", "a.com")
    assert not patterned.allows("http://a.com/about", "a.com")
    assert not patterned.allows("http://b.com/shop/1", "b.com")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://a.com/" + "x" * 100, "longer than 64"),
        ("http://a.com/a/b/a/b/a/b/a", "'a' repeated more than 3 times"),
        ("http://a.com/?" + "&".join(f"p{i}=1" for i in range(6)), "more than 5 query"),
        ("http://a.com/2024/01/01/01/post", None),  # three times is allowed
        ("http://a.com/2024/01/01/01/01/post", "'01' repeated"),
        ("http://a.com/a/b/a/b/a/b", None),
        ("http://a.com/fine?x=1&y=2", None),
    ],
)
def test_trap_guard(url: str, reason: str | None) -> None:
    found = TrapGuard(max_length=64, max_repeats=3, max_params=5).reason(url)
    if reason is None:
        assert found is None
    else:
        assert found is not None
        assert reason in found
