import pytest

from crawler import ConfigError, Settings


def test_defaults_are_valid_and_frozen() -> None:
    settings = Settings()
    assert settings.concurrency >= settings.per_domain_concurrency >= 1
    with pytest.raises(AttributeError):
        settings.concurrency = 3  # type: ignore[misc]


def test_merge_parses_strings_by_field_type() -> None:
    settings = Settings().merge(
        {"concurrency": "8", "rate_limit": "2.5", "obey_robots": "no", "user_agent": "bot/1"}
    )
    assert (settings.concurrency, settings.rate_limit) == (8, 2.5)
    assert settings.obey_robots is False
    assert settings.user_agent == "bot/1"


def test_layers_apply_in_order() -> None:
    spider_layer = Settings().merge({"concurrency": 4, "max_pages": 10})
    cli_layer = spider_layer.merge({"concurrency": "2"})
    assert (cli_layer.concurrency, cli_layer.max_pages) == (2, 10)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"concurency": "3"}, "unknown setting 'concurency'"),
        ({"concurrency": "many"}, "setting 'concurrency' must be int"),
        ({"concurrency": "0"}, "setting 'concurrency' must be at least 1"),
        ({"rate_limit": "-1"}, "setting 'rate_limit' must be at least 0"),
        ({"rate_limit": "nan"}, "setting 'rate_limit' must be float"),
        ({"obey_robots": "maybe"}, "setting 'obey_robots' must be bool"),
        ({"max_pages": 1.5}, "setting 'max_pages' must be int"),
        ({"concurrency": True}, "setting 'concurrency' must be int"),
        ({"user_agent": "a\nb"}, "user_agent"),
    ],
)
def test_bad_settings_are_errors_naming_the_setting(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings().merge(overrides)


def test_retry_statuses_parse_and_validate() -> None:
    assert Settings().merge({"retry_statuses": "429, 503"}).retry_statuses == (429, 503)
    with pytest.raises(ConfigError, match="retry_statuses"):
        Settings().merge({"retry_statuses": "200"})
    with pytest.raises(ConfigError, match="retry_statuses"):
        Settings().merge({"retry_statuses": "many"})
