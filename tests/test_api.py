import crawler


def test_all_is_sorted_and_is_the_public_surface() -> None:
    assert crawler.__all__ == sorted(crawler.__all__)
    public = {name for name in vars(crawler) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(crawler, name)).__name__ == "module"}
    assert set(crawler.__all__) - {"__version__"} == public - modules


def test_every_error_derives_from_crawler_error() -> None:
    errors = [
        getattr(crawler, n) for n in crawler.__all__ if n.endswith("Error") or n.startswith("Fetch")
    ]
    assert all(issubclass(e, crawler.CrawlerError) for e in errors)


def test_the_version_has_one_source() -> None:
    from importlib.metadata import version

    assert version("crawler") == crawler.__version__


def test_every_public_error_lives_in_the_one_tree_and_signals_stand_apart() -> None:
    import crawler.errors
    import crawler.store.postgres  # (it defines a private error of its own)

    def subclasses(root: type) -> list[type]:
        found = []
        for sub in root.__subclasses__():
            found += [sub, *subclasses(sub)]
        return found

    public = [e for e in subclasses(crawler.CrawlerError) if not e.__name__.startswith("_")]
    assert {e.__module__ for e in public} == {"crawler.errors"}
    for signal in (crawler.Retry, crawler.DropItem):
        assert issubclass(signal, crawler.errors.Signal)
        assert not issubclass(signal, crawler.CrawlerError)  # `except CrawlerError` lets it by


def test_states_are_enums_that_read_as_the_strings_they_were() -> None:
    from crawler.records import Ended, ScopeStrategy

    assert Ended.COMPLETE == "complete"
    assert f"{Ended.MAX_PAGES}" == "max_pages"
    assert crawler.Spider.scope is ScopeStrategy.SAME_HOST
    assert crawler.Spider.scope == "same-host"
