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


def test_the_folders_depend_one_way() -> None:
    # crawl/ assembles the rest and tools/ drives it from outside; no folder below them
    # imports either, and the network and the store know nothing of pages or rendering
    import ast
    from pathlib import Path

    package = Path(crawler.__file__).parent
    below = {
        "page": {"crawl", "tools"},
        "render": {"crawl", "tools", "page"},
        "net": {"crawl", "tools", "page", "render", "store"},
        "store": {"crawl", "tools", "page", "render", "net"},
    }
    found = []
    for folder, forbidden in below.items():
        for path in (package / folder).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level >= 2 and node.module:
                    if node.module.split(".")[0] in forbidden:
                        found.append(f"{folder}/{path.name} imports {node.module}")
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    parts = node.module.split(".")
                    if parts[0] == "crawler" and len(parts) > 1 and parts[1] in forbidden:
                        found.append(f"{folder}/{path.name} imports {node.module}")
    assert found == []


def test_public_import_paths_still_work() -> None:
    from crawler.errors import Signal
    from crawler.parser import extract_links
    from crawler.store import open_store
    from crawler.testing import Replay
    from crawler.urls import canonicalize, resolve

    assert all((Signal, extract_links, open_store, Replay, canonicalize, resolve))
