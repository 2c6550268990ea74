import pytest

from crawler.urls import Scope, canonicalize, host_of, split_url


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("HTTP://Example.COM/Path?Q=A", "http://example.com/Path?Q=A"),
        ("http://example.com", "http://example.com/"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("http://example.com/a#section", "http://example.com/a"),
        ("http://example.com/a?b=1&a=2#x", "http://example.com/a?b=1&a=2"),
        ("http://example.com/a?", "http://example.com/a"),
        ("  http://example.com/a  ", "http://example.com/a"),
        ("http://exa\tmple.com/a\nb", "http://example.com/ab"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://user:pw@Example.com/", "http://user:pw@example.com/"),
        ("http://example.com/%7Euser", "http://example.com/%7Euser"),
        ("ftp://example.com/", None),
        ("mailto:a@b.c", None),
        ("/relative/path", None),
        ("http:///nohost", None),
        ("http://example.com:99999/", None),
    ],
)
def test_canonicalize(url: str, canonical: str | None) -> None:
    assert canonicalize(url) == canonical


def test_split_url_gives_the_host_key() -> None:
    assert split_url("https://WWW.Example.com:8080/x") == (
        "https://www.example.com:8080/x",
        "www.example.com",
    )
    assert host_of("nope") is None


def test_default_scope_is_the_start_hosts_exactly() -> None:
    scope = Scope.of(start_hosts=["example.com"], allowed_domains=None)
    assert scope.allows("example.com")
    assert not scope.allows("www.example.com")
    assert not scope.allows("other.org")


def test_allowed_domains_include_subdomains() -> None:
    scope = Scope.of(start_hosts=["x.org"], allowed_domains=["Example.com"])
    assert scope.allows("example.com")
    assert scope.allows("a.b.example.com")
    assert not scope.allows("badexample.com")
    assert not scope.allows("x.org")


def test_empty_allowed_domains_allow_any_host() -> None:
    assert Scope.of(start_hosts=["x.org"], allowed_domains=[]).allows("anything.net")
