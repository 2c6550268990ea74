"""The command line, run as users run it: `python -m crawler ...` in a subprocess."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import stored_counts
from tests.sites import GraphSite

SPIDER = """
from crawler import Request, Spider

class Graph(Spider):
    name = "graph"
    start_urls = []
    custom_settings = {"obey_robots": False, "concurrency": 8, "per_domain_concurrency": 2}

    async def parse(self, response):
        yield {"url": response.url, "title": response.css_first("title").text()}
        for url in response.links():
            yield Request(url)
"""


def run_args(site: GraphSite, *extra: str) -> list[str]:
    """`run graph.py` over `site`, the way these tests crawl it."""
    return ["run", "graph.py", "-a", f"start_urls={','.join(site.start_urls)}", *extra]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crawler", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def acli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crawler",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.fixture
def spider_file(tmp_path: Path) -> Path:
    path = tmp_path / "graph.py"
    path.write_text(SPIDER)
    return path


@pytest.mark.parametrize(
    ("source", "args", "message"),
    [
        ("class (:", (), "syntax error"),
        ("x = 1", (), "defines no Spider subclass"),
        (SPIDER, ("-s", "concurrency=lots"), "setting 'concurrency' must be int"),
        (SPIDER, ("-s", "nonsense=1"), "unknown setting 'nonsense'"),
        (SPIDER, ("-s", "novalue"), "-s expects NAME=VALUE"),
        (SPIDER, ("-a", "missing=1"), "has no argument 'missing'"),
        (SPIDER, ("-o", "items.xml"), "must end in .jsonl, .json, .csv or .parquet"),
        (SPIDER, (), "has no start URLs"),
        (SPIDER, ("-a", "start_urls=example.com/x"), "is not an absolute http(s) URL"),
        (SPIDER, ("-s", "pipelines=nowhere:Thing"), "cannot import 'nowhere'"),
        (SPIDER, ("-s", "hooks=graph"), "takes 'module:Class' names"),
        (
            SPIDER.replace('    name = "graph"', '    name = "graph"\n    pipelines = [dict]'),
            (),
            "dict is a class: list instances",
        ),
        (
            SPIDER.replace(
                "    async def parse", "    def opened(self):\n        pass\n\n    async def parse"
            ),
            (),
            "`opened` must be an async method",
        ),
    ],
)
def test_user_mistakes_exit_2_with_one_line(
    tmp_path: Path, source: str, args: tuple[str, ...], message: str
) -> None:
    (tmp_path / "s.py").write_text(source)
    result = cli("run", "s.py", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_store_of_another_spider_exits_2(tmp_path: Path, spider_file: Path) -> None:
    other = tmp_path / "other.py"
    other.write_text(SPIDER.replace('name = "graph"', 'name = "other"'))
    refused = "start_urls=http://127.0.0.1:9/"  # the discard port: connection refused
    first = cli(
        "run", "graph.py", "--store", "x.db", "-a", refused, "-s", "max_retries=0", cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr  # a failed page is recorded, not fatal
    result = cli("run", "other.py", "--store", "x.db", "-a", refused, cwd=tmp_path)
    assert result.returncode == 2
    assert "belongs to spider 'graph', not 'other'" in result.stderr


def test_export_errors(tmp_path: Path) -> None:
    result = cli("export", "--store", "missing.db", "-o", "x.jsonl", cwd=tmp_path)
    assert result.returncode == 2
    assert "no store at" in result.stderr
    (tmp_path / "junk.db").write_text("junk" * 100)
    result = cli("export", "--store", "junk.db", "-o", "x.jsonl", cwd=tmp_path)
    assert result.returncode == 1
    assert "not a crawler store" in result.stderr
    assert "Traceback" not in result.stderr


async def run_until_hits(
    site: GraphSite, args: list[str], cwd: Path, hits: int, sig: int
) -> tuple[int, str]:
    reached = asyncio.Event()
    site.on_hit = lambda n: reached.set() if n >= hits else None
    proc = await acli(*args, cwd=cwd)
    waiter = asyncio.create_task(reached.wait())
    ended = asyncio.create_task(proc.wait())
    await asyncio.wait({waiter, ended}, return_when=asyncio.FIRST_COMPLETED)
    assert reached.is_set(), "the crawl ended before it could be interrupted"
    proc.send_signal(sig)
    _, stderr = await proc.communicate()
    site.on_hit = None
    return proc.returncode or 0, stderr.decode()


async def test_ctrl_c_exits_130_and_the_same_command_resumes(
    graph: GraphSite, spider_file: Path, tmp_path: Path
) -> None:
    args = run_args(graph, "-o", "items.jsonl")
    code, stderr = await run_until_hits(graph, args, tmp_path, 60, signal.SIGINT)
    assert code == 130, stderr
    assert "crawl stopped" in stderr
    assert "resume with: python -m crawler run graph.py" in stderr
    assert (await stored_counts(tmp_path / "graph.db")).leased == 0
    partial = (tmp_path / "items.jsonl").read_text().splitlines()
    assert 60 <= len(partial) < 300
    assert max(graph.hits.values()) == 1  # in-flight pages were finished, not dropped

    proc = await acli(*args, cwd=tmp_path)
    _, stderr_bytes = await proc.communicate()
    assert proc.returncode == 0, stderr_bytes.decode()
    items = [json.loads(line) for line in (tmp_path / "items.jsonl").read_text().splitlines()]
    assert sorted(i["url"] for i in items) == sorted(graph.all_urls())
    assert max(graph.hits.values()) == 1

    result = await acli(*args, cwd=tmp_path)
    _, again = await result.communicate()
    assert result.returncode == 0
    assert "already complete" in again.decode()


@pytest.mark.slow
async def test_kill_9_loses_nothing_and_duplicates_nothing(
    graph: GraphSite, spider_file: Path, tmp_path: Path
) -> None:
    args = run_args(graph)
    code, _ = await run_until_hits(graph, args, tmp_path, 100, signal.SIGKILL)
    assert code == -signal.SIGKILL
    proc = await acli(*args, cwd=tmp_path)
    _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    result = cli("export", "--store", "graph.db", "-o", "items.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "items.csv", newline="") as f:
        items = list(csv.DictReader(f))
    assert sorted(i["url"] for i in items) == sorted(graph.all_urls())
    assert set(items[0]) == {"url", "title"}
    refetched = sum(1 for n in graph.hits.values() if n > 1)
    assert refetched <= 8  # at most the pages in flight at the kill (concurrency)


def test_demo_crawls_the_local_shop(tmp_path: Path) -> None:
    result = cli("demo", "--books", "30", "-o", "books.jsonl", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    books = (tmp_path / "books.jsonl").read_text().splitlines()
    assert len(books) == 30
    assert "crawl complete" in result.stderr
    # the shop's robots.txt disallows one URL: skipped, apart from failures
    assert "(0 failed, 0 retries, 1 disallowed by robots.txt)" in result.stderr
    assert "URLs done, 0 failed, 1 disallowed by robots.txt, 0 queued" in result.stderr
    stats = cli("stats", "--store", "demo.db", "--json", cwd=tmp_path)
    totals = json.loads(stats.stdout)["totals"]
    assert (totals["failed"], totals["robots_disallowed"]) == (0, 1)


def test_books_example_spider_on_the_demo_shop(tmp_path: Path) -> None:
    from crawler.tools.demo import DemoShop, serve

    spider = Path(__file__).parent.parent / "spiders" / "books.py"
    with serve(DemoShop(45)) as base:
        result = cli(
            "run", str(spider), "-a", f"start_urls={base}", "-o", "books.csv", "-q", cwd=tmp_path
        )
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "books.csv", newline="") as f:
        books = list(csv.DictReader(f))
    assert len(books) == 45
    assert {"title", "price", "in_stock", "rating", "category", "upc"} <= set(books[0])
    assert all(b["rating"] in {"1", "2", "3", "4", "5"} for b in books)


@pytest.mark.slow
async def test_failures_are_listed_filtered_and_retried(
    graph: GraphSite, spider_file: Path, tmp_path: Path
) -> None:
    broken = {graph.url(0, 5), graph.url(0, 6), graph.url(1, 7)}
    graph.broken |= broken
    args = run_args(graph, "-s", "max_retries=1", "-s", "retry_backoff=0")
    proc = await acli(*args, cwd=tmp_path)
    _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()

    listed = cli("failures", "--store", "graph.db", cwd=tmp_path)
    assert listed.returncode == 0
    assert "3 failed URLs" in listed.stderr
    failures = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {f["url"] for f in failures} == broken
    assert {(f["error"], f["status"], f["attempts"]) for f in failures} == {("http_status", 500, 2)}
    one_host = cli(
        "failures", "--store", "graph.db", "--host", graph.hosts[1], "-o", "f.jsonl", cwd=tmp_path
    )
    assert one_host.returncode == 0
    assert [json.loads(x)["url"] for x in (tmp_path / "f.jsonl").read_text().splitlines()] == [
        graph.url(1, 7)
    ]
    none = cli("failures", "--store", "graph.db", "--error", "timeout", cwd=tmp_path)
    assert none.stdout == ""
    assert "0 failed URLs" in none.stderr
    two_kinds = cli(
        "failures", "--store", "graph.db", "--error", "timeout,http_status", cwd=tmp_path
    )
    assert "3 failed URLs" in two_kinds.stderr
    unknown = cli("failures", "--store", "graph.db", "--error", "nosuchkind", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "no error kind 'nosuchkind': the kinds are " in unknown.stderr
    assert "http_status" in unknown.stderr

    proc = await acli(*args, cwd=tmp_path)  # again: nothing to fetch, the way out is named
    _, stderr = await proc.communicate()
    assert "3 failed URLs: --retry-failed queues them again" in stderr.decode()

    graph.broken.clear()  # the site is repaired
    proc = await acli(*args, "--retry-failed", "--host", graph.hosts[1], cwd=tmp_path)
    _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    assert "queued 1 failed URLs again" in stderr.decode()  # only that host's
    proc = await acli(
        *args, "--retry-failed", "--error", "http_status", "-o", "items.jsonl", cwd=tmp_path
    )
    _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    assert "queued 2 failed URLs again" in stderr.decode()
    items = [json.loads(x) for x in (tmp_path / "items.jsonl").read_text().splitlines()]
    assert sorted(i["url"] for i in items) == sorted(graph.all_urls())
    assert cli("failures", "--store", "graph.db", cwd=tmp_path).stdout == ""
    alone = cli("run", "graph.py", "--error", "timeout", cwd=tmp_path)
    assert alone.returncode == 2
    assert "choose which failures --retry-failed retries" in alone.stderr


def test_an_unknown_option_that_names_a_setting_suggests_s(tmp_path: Path) -> None:
    result = cli("run", "graph.py", "--concurrency", "-3", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: python -m crawler run ")  # the command's usage
    assert "did you mean -s concurrency=-3?" in result.stderr
    result = cli("fetch", "http://a.com/", "--request-timeout=9", cwd=tmp_path)
    assert "did you mean -s request_timeout=9?" in result.stderr
    result = cli("run", "graph.py", "--nonsense", cwd=tmp_path)
    assert "unrecognized arguments: --nonsense" in result.stderr
    assert "did you mean" not in result.stderr


async def test_json_output_and_o_that_starts_the_file_over(
    graph: GraphSite, spider_file: Path, tmp_path: Path
) -> None:
    proc = await acli(*run_args(graph, "-o", "items.json", "-s", "max_pages=5"), cwd=tmp_path)
    _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    assert len(json.loads((tmp_path / "items.json").read_text())) == 5
    proc = await acli(*run_args(graph, "-o", "items.json"), cwd=tmp_path)  # resumed: appended
    _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    everything = json.loads((tmp_path / "items.json").read_text())
    assert sorted(i["url"] for i in everything) == sorted(graph.all_urls())
    (tmp_path / "items.json").write_text("[]")  # edited by hand: -O writes it whole again
    proc = await acli(*run_args(graph, "-O", "items.json"), cwd=tmp_path)
    _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    assert "shorter than it was" not in stderr.decode()
    assert json.loads((tmp_path / "items.json").read_text()) == everything
    exported = cli("export", "--store", "graph.db", "-O", "all.json", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert json.loads((tmp_path / "all.json").read_text()) == everything
    both = cli(*run_args(graph, "-o", "a.jsonl", "-O", "b.jsonl"), cwd=tmp_path)
    assert both.returncode == 2
    assert "not allowed with argument" in both.stderr


def test_list_names_the_spiders_of_a_file_or_folder(tmp_path: Path) -> None:
    result = cli("list", str(Path(__file__).parent.parent / "spiders"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names == ["account", "app", "books", "search_api", "shop", "site"]
    assert "Books in " in result.stdout
    (tmp_path / "spiders").mkdir()
    (tmp_path / "spiders" / "good.py").write_text(SPIDER)
    (tmp_path / "spiders" / "helpers.py").write_text("X = 1\n")  # not a spider: left out
    (tmp_path / "spiders" / "broken.py").write_text("class (\n")
    result = cli("list", cwd=tmp_path)  # the spiders folder by default
    assert result.returncode == 1
    assert result.stdout.split()[0] == "graph"
    assert "broken.py:1: syntax error" in result.stderr
    assert "helpers" not in result.stdout + result.stderr


def test_spider_means_a_spider_name_everywhere(tmp_path: Path) -> None:
    (tmp_path / "graph.py").write_text(SPIDER)
    result = cli("fetch", "http://a.com/", "--spider", "graph.py", cwd=tmp_path)
    assert result.returncode == 2
    assert "--spider names a spider (as in run); give the file it is in with --file graph.py" in (
        result.stderr
    )
    result = cli("fetch", "example.com/x", "--file", "graph.py", "--spider", "nope", cwd=tmp_path)
    assert result.returncode == 2
    assert "has no spider named 'nope'" in result.stderr


def test_view_opens_the_page_as_the_crawler_saw_it(tmp_path: Path) -> None:
    from crawler.tools.demo import DemoShop, serve

    opener = tmp_path / "browser.py"
    opener.write_text("import sys, pathlib\npathlib.Path(sys.argv[2]).write_text(sys.argv[1])\n")
    env = {**os.environ, "BROWSER": f"{sys.executable} {opener} %s {tmp_path / 'opened'}"}
    with serve(DemoShop(5)) as base:
        result = subprocess.run(
            [sys.executable, "-m", "crawler", "view", f"{base}catalogue/page-1.html"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    opened = (tmp_path / "opened").read_text()
    assert opened.startswith("file://")
    page = Path(opened.removeprefix("file://")).read_text()
    assert f'<base href="{base}catalogue/page-1.html">' in page  # its links resolve
    assert "All products" in page


def test_shop_example_spider_cleans_validates_and_dedups(tmp_path: Path) -> None:
    from crawler.tools.demo import DemoShop, serve

    spider = Path(__file__).parent.parent / "spiders" / "shop.py"
    with serve(DemoShop(45)) as base:
        result = cli(
            "run", str(spider), "-a", f"start_urls={base}", "-o", "books.jsonl", "-q", cwd=tmp_path
        )
    assert result.returncode == 0, result.stderr
    books = [json.loads(line) for line in (tmp_path / "books.jsonl").read_text().splitlines()]
    assert len(books) == 45
    assert len({book["upc"] for book in books}) == 45
    assert all(isinstance(book["price"], float) and book["price"] > 0 for book in books)
    assert all(book["rating"] in range(1, 6) for book in books)
    stats = json.loads(cli("stats", "--store", "shop.db", "--json", cwd=tmp_path).stdout)
    assert stats["stats"] == {"book pages": 45}
    assert stats["dropped_items"] == {}


async def test_the_crawl_process_collects_young_objects_every_10000(
    graph: GraphSite, tmp_path: Path
) -> None:
    # (a page's objects die young instead of filling the oldest generation: see
    # cli.young_objects_per_collection); the spider reads the collector's threshold mid-crawl
    (tmp_path / "graph.py").write_text(
        SPIDER.replace(
            '"url": response.url,', '"url": response.url, "gc": __import__("gc").get_threshold(),'
        )
    )
    proc = await acli(*run_args(graph, "-s", "max_pages=5", "-o", "items.jsonl"), cwd=tmp_path)
    _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    items = [json.loads(line) for line in (tmp_path / "items.jsonl").read_text().splitlines()]
    assert len(items) == 5
    assert {tuple(item["gc"]) for item in items} == {(10_000, 10, 10)}
