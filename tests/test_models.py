import json
import re
from urllib.parse import parse_qsl

import httpx
import pytest

from crawler import FormRequest, JsonRequest, Request, Response
from crawler.models import JSON_ACCEPT


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


def test_scrapy_pseudo_elements_fail_in_one_line_naming_the_calls_that_work() -> None:
    page = response('<a href="c.html">c</a><a href="d.html">d</a>')
    for call, selector, expected in (
        (page.css, "a::attr(href)", ["c.html", "d.html"]),
        (page.css, "a::text", ["c", "d"]),
        (page.css_first, "a::attr( href )", "c.html"),
        (page.css_first, "a::text", "c"),
    ):
        with pytest.raises(ValueError, match="Scrapy's") as caught:
            call(selector)
        message = str(caught.value)
        assert "\n" not in message
        scrapy, nodes = re.findall(r"use (.*?), or read the nodes: (.*)$", message)[0]
        assert eval(scrapy, {"response": page}) == expected  # each call it names works
        assert eval(nodes, {"response": page}) == expected


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


def test_requests_beyond_get_are_checked_when_built() -> None:
    request = Request("http://a.com/", method="put", body="é", headers={"X-A": "1"})
    assert (request.method, request.body, request.header("x-a")) == ("PUT", "é".encode(), "1")
    with pytest.raises(ValueError, match="HTTP method"):
        Request("http://a.com/", method="GE T")
    with pytest.raises(TypeError, match="bytes or str"):
        Request("http://a.com/", body=12)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a valid header"):
        Request("http://a.com/", headers={"X": "a\r\nInjected: 1"})
    with pytest.raises(TypeError, match="str to str"):
        Request("http://a.com/", cookies={"a": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="allow_status"):
        Request("http://a.com/", allow_status=(404, 1000))
    assert Request("http://a.com/", allow_status=[410, 404]).allow_status == (404, 410)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="session"):
        Request("http://a.com/", session="")
    with pytest.raises(ValueError, match="proxy"):
        Request("http://a.com/", proxy="socks5://p:1080")


def test_json_requests() -> None:
    get = JsonRequest("http://a.com/api")
    assert (get.method, get.body, get.header("accept")) == ("GET", None, JSON_ACCEPT)
    post = JsonRequest("http://a.com/api", data={"q": "é", "page": 2})
    assert post.method == "POST"
    assert json.loads(post.body or b"") == {"q": "é", "page": 2}
    assert post.header("content-type") == "application/json"
    put = JsonRequest("http://a.com/api", data=[1], method="PUT", headers={"Accept": "x/y"})
    assert (put.method, put.header("accept")) == ("PUT", "x/y")
    with pytest.raises(ValueError, match="not both"):
        JsonRequest("http://a.com/api", data={}, body=b"{}")
    with pytest.raises(ValueError, match="not JSON-serializable"):
        JsonRequest("http://a.com/api", data={"when": object()})
    assert isinstance(post, Request)


def test_form_requests() -> None:
    post = FormRequest("http://a.com/s", formdata={"q": "a b", "tag": ["x", "y"]})
    assert (post.method, post.body) == ("POST", b"q=a+b&tag=x&tag=y")
    assert post.header("content-type") == "application/x-www-form-urlencoded"
    get = FormRequest("http://a.com/s?old=1", formdata=[("q", "1")], method="GET")
    assert (get.url, get.body, get.headers) == ("http://a.com/s?q=1", None, None)
    with pytest.raises(ValueError, match="not both"):
        FormRequest("http://a.com/s", formdata={}, body="x")
    with pytest.raises(TypeError, match="values must be str"):
        FormRequest("http://a.com/s", formdata={"a": object()})


FORMS = """
<form id="search" action="/search"><input name="q" value="default"><button>Go</button></form>
<form name="login" action="/login?next=/account#top" method="post">
  <input type="hidden" name="csrf" value="t0k3n">
  <input name="user"><input type="password" name="password">
  <input type="checkbox" name="remember" checked><input type="checkbox" name="spam" value="y">
  <input type="radio" name="plan" value="a"><input type="radio" name="plan" value="b" checked>
  <select name="lang"><option value="en">English</option><option selected>Français</option></select>
  <select name="size"><option>S</option><option>M</option></select>
  <select name="tags" multiple>
    <option selected>a</option><option>b</option><option selected>c</option>
  </select>
  <textarea name="note">hello</textarea>
  <input name="off" value="x" disabled><input type="file" name="upload"><input type="reset">
  <input type="submit" name="action" value="save"><input type="submit" name="action" value="delete">
</form>
"""


def test_from_response_submits_a_form_as_a_browser_does() -> None:
    page = response(FORMS, url="http://a.com/dir/page")
    request = FormRequest.from_response(
        page, formname="login", formdata={"user": "ann", "password": "pw", "note": None}
    )
    assert request.method == "POST"
    assert request.url == "http://a.com/login?next=/account"
    assert parse_qsl((request.body or b"").decode(), keep_blank_values=True) == [
        ("csrf", "t0k3n"),
        ("remember", "on"),
        ("plan", "b"),
        ("lang", "Français"),
        ("size", "S"),
        ("tags", "a"),
        ("tags", "c"),
        ("action", "save"),
        ("user", "ann"),
        ("password", "pw"),
    ]
    clicked = FormRequest.from_response(page, formid="search", formdata={"q": "shoes"})
    assert (clicked.method, clicked.url) == ("GET", "http://a.com/search?q=shoes")
    delete = FormRequest.from_response(page, formnumber=1, clickdata={"value": "delete"})
    assert ("action", "delete") in parse_qsl((delete.body or b"").decode())
    assert FormRequest.from_response(page, formcss="form[name=login]").url.endswith(
        "/login?next=/account"
    )


def test_from_response_says_which_forms_there_are() -> None:
    page = response(FORMS)
    with pytest.raises(ValueError, match=r"no form with id 'nope'.*#0 id='search' GET /search"):
        FormRequest.from_response(page, formid="nope")
    with pytest.raises(ValueError, match="#1 name='login' POST /login"):
        FormRequest.from_response(page, formnumber=5)
    with pytest.raises(ValueError, match="no submit button matches"):
        FormRequest.from_response(page, formnumber=1, clickdata={"value": "other"})
    with pytest.raises(ValueError, match="its forms: none"):
        FormRequest.from_response(response("<p>no forms</p>"))


def test_json_and_xpath_on_responses() -> None:
    api = response('{"items": [1, 2], "next": null}', **{"Content-Type": "application/json"})
    assert api.json() == {"items": [1, 2], "next": None}
    with pytest.raises(ValueError, match="is not JSON"):
        response("<html>").json()
    page = response("<table><tr><td>a</td><td>1</td></tr><tr><td>b</td><td>2</td></tr></table>")
    rows = [row.xpath("./td/text()").getall() for row in page.xpath("//tr")]
    assert rows == [["a", "1"], ["b", "2"]]
    assert page.selector.css("td::text").getall() == ["a", "1", "b", "2"]
    assert page.xpath("//td[text()=$v]/following-sibling::td/text()", v="b").get() == "2"


def test_follow_keeps_the_session_and_takes_request_options() -> None:
    page = Response(
        url="http://a.com/",
        status=200,
        headers=httpx.Headers({"Content-Type": "text/html"}),
        body=b"",
        request=Request("http://a.com/", session="alice"),
    )
    followed = page.follow("/next", method="POST", body=b"x")
    assert (followed.session, followed.method, followed.url) == (
        "alice",
        "POST",
        "http://a.com/next",
    )
    assert page.follow("/x", session="bob").session == "bob"
