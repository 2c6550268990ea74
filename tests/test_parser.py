import pytest

from crawler import parser


def links(html: str, url: str = "http://example.com/dir/page.html") -> list[str]:
    return parser.extract_links(parser.parse_html(html), url)


def test_links_are_absolute_fragment_free_and_unique() -> None:
    html = """
      <a href="a.html">1</a> <a href="/b#top">2</a> <a href="a.html#x">dup</a>
      <a href="https://other.org/c">3</a> <a href="mailto:x@y.z">no</a>
      <a href="javascript:void(0)">no</a> <a>no href</a> <a href="">the page</a>
      <map><area href="d.html"></map>
    """
    assert links(html) == [
        "http://example.com/dir/a.html",
        "http://example.com/b",
        "https://other.org/c",
        "http://example.com/dir/page.html",  # as in a browser, href="" is the page itself
        "http://example.com/dir/d.html",
    ]


def test_links_resolve_against_base_href() -> None:
    html = '<head><base href="http://cdn.example.com/x/"></head><a href="y">y</a>'
    assert links(html) == ["http://cdn.example.com/x/y"]


def test_links_survive_broken_markup() -> None:
    assert links('<a href="ok"><div><a href=q>x<p></table><a href="r"') == [
        "http://example.com/dir/ok",
        "http://example.com/dir/q",
    ]


@pytest.mark.parametrize(
    ("content_type", "html"),
    [
        ("text/html", True),
        ("application/xhtml+xml; charset=utf-8", True),
        (None, True),
        ("image/png", False),
        ("application/json", False),
        ("TEXT/HTML;charset=x", True),
    ],
)
def test_is_html(content_type: str | None, html: bool) -> None:
    assert parser.is_html(content_type) is html


def test_decode_prefers_header_then_meta_then_detection() -> None:
    text = "café"
    assert parser.decode(text.encode("cp1252"), "text/html; charset=windows-1252") == text
    meta = b'<meta charset="iso-8859-1"><p>caf\xe9</p>'
    assert "café" in parser.decode(meta, "text/html")
    equiv = b'<meta http-equiv="Content-Type" content="text/html; charset=koi8-r">\xf0\xd2'
    assert "Пр" in parser.decode(equiv, None)
    assert parser.decode("naïve ☃".encode(), "text/html") == "naïve ☃"


def test_decode_never_raises_on_bad_bytes_or_labels() -> None:
    assert parser.decode(b"\xff\xfe\xfa ok", "text/html; charset=bogus-charset").endswith("ok")
    assert "\ufffd" in parser.decode(b"abc \xff def", "text/html; charset=utf-8")
