import httpx
import pytest

from crawler import Request, Response


def response(body: str, url: str = "http://example.com/a/b.html", **headers: str) -> Response:
    return Response(
        url=url,
        status=200,
        headers=httpx.Headers({"Content-Type": "text/html", **headers}),
        body=body.encode(),
        request=Request(url, depth=2),
    )


def test_css_and_links() -> None:
    page = response('<title> T </title><a class="n" href="c.html">c</a><a href="/d#x">d</a>')
    first = page.css_first("title")
    assert first is not None
    assert first.text(strip=True) == "T"
    assert [n.attributes["href"] for n in page.css("a")] == ["c.html", "/d#x"]
    assert page.css_first("nothing") is None
    assert page.links() == ["http://example.com/a/c.html", "http://example.com/d"]
    assert page.depth == 2


def test_headers_are_case_insensitive() -> None:
    page = response("", **{"X-Thing": "1"})
    assert page.headers["x-thing"] == page.headers["X-THING"] == "1"


def test_follow_resolves_strings_and_nodes_against_the_base() -> None:
    page = response('<base href="http://cdn.example.com/z/"><a href="n.html">n</a><a>bare</a>')
    node = page.css_first("a")
    assert node is not None
    request = page.follow(node, priority=3, meta={"k": 1})
    assert (request.url, request.priority, request.meta) == (
        "http://cdn.example.com/z/n.html",
        3,
        {"k": 1},
    )
    assert page.follow("../up").url == "http://cdn.example.com/up"
    bare = page.css("a")[1]
    with pytest.raises(ValueError, match="without an href"):
        page.follow(bare)


def test_request_defaults() -> None:
    request = Request("http://example.com/")
    assert request.callback_name == "parse"
    assert request.meta == {}
    assert request.priority == 0
    assert request.depth == 0
    with pytest.raises(TypeError):
        Request(b"http://example.com/")  # type: ignore[arg-type]
