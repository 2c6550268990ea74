from pathlib import Path

import pytest

from crawler import ConfigError, Spider
from crawler.spider import load_spider_class

GOOD = """
from crawler import Spider, Request

class One(Spider):
    name = "one"
    start_urls = ["http://example.com/"]
    limit = 5
    ratio = 0.5
    deep = False
    label = None

    async def parse(self, response):
        yield {"url": response.url}
"""


def write(tmp_path: Path, text: str, name: str = "spider.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loads_the_spider_class(tmp_path: Path) -> None:
    cls = load_spider_class(write(tmp_path, GOOD))
    assert cls.name == "one"


def test_arguments_are_typed_by_the_attribute_default(tmp_path: Path) -> None:
    cls = load_spider_class(write(tmp_path, GOOD))
    spider = cls(
        limit="7", ratio="0.25", deep="yes", label="x", start_urls="http://a.com/,http://b.com/"
    )
    assert (spider.limit, spider.ratio, spider.deep, spider.label) == (7, 0.25, True, "x")  # type: ignore[attr-defined]
    assert spider.start_urls == ["http://a.com/", "http://b.com/"]
    assert cls.start_urls == ["http://example.com/"]  # the class is untouched


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"nope": "1"}, "has no argument 'nope'"),
        ({"parse": "1"}, "has no argument 'parse'"),
        ({"custom_settings": "1"}, "has no argument 'custom_settings'"),
        ({"limit": "lots"}, "spider argument 'limit' must be int"),
    ],
)
def test_bad_arguments_are_config_errors(
    tmp_path: Path, arguments: dict[str, str], message: str
) -> None:
    cls = load_spider_class(write(tmp_path, GOOD))
    with pytest.raises(ConfigError, match=message):
        cls(**arguments)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("class X(:\n", r"spider.py:1: syntax error"),
        ("import no_such_module_here\n", "ModuleNotFoundError"),
        ("x = 1\n", "defines no Spider subclass"),
        (
            GOOD + GOOD.replace("One", "Two").replace('"one"', '"two"').split("\n", 2)[2],
            r"several spiders \(one, two\): choose one with --spider NAME",
        ),
        ("from crawler import Spider\nclass S(Spider):\n    pass\n", "needs a `name`"),
        (
            "from crawler import Spider\nclass S(Spider):\n    name='s'\n    start_urls='http://x/'\n",
            "must be a list of URL strings",
        ),
        (
            "from crawler import Spider\nclass S(Spider):\n    name='s'\n"
            "    allowed_domains=['https://x.com/']\n",
            "must be a bare domain",
        ),
    ],
)
def test_broken_spider_files_are_one_line_config_errors(
    tmp_path: Path, source: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_spider_class(write(tmp_path, source))
    assert "\n" not in str(info.value)


def test_spider_is_chosen_by_name(tmp_path: Path) -> None:
    two = GOOD + GOOD.replace("One", "Two").replace('"one"', '"two"').split("\n", 2)[2]
    path = write(tmp_path, two)
    assert load_spider_class(path, "two").__name__ == "Two"
    assert load_spider_class(path, "One").name == "one"
    with pytest.raises(ConfigError, match="no spider named 'three'"):
        load_spider_class(path, "three")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="spider file not found"):
        load_spider_class(tmp_path / "nope.py")


def test_callbacks_resolve_by_name_only_to_methods() -> None:
    class S(Spider):
        name = "s"
        helper = "not callable"

        async def parse_item(self, response: object) -> None:
            return None

    spider = S()
    assert spider.callback("parse_item") == spider.parse_item
    assert spider.owns_callback(spider.parse_item)
    assert not spider.owns_callback(S().parse_item)
    for name in ("helper", "missing", "__init__", "_private"):
        with pytest.raises(ConfigError, match="no callback method"):
            spider.callback(name)


def test_a_spider_has_a_logger_named_after_it() -> None:
    class Named(Spider):
        name = "named"

    assert Named().logger.name == "named"
    with pytest.raises(ConfigError):
        Named(logger="x")
