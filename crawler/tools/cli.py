"""The command line: `run`, `export`, `failures`, `duplicates`, `stats`, `report`, `fetch`,
`parse`, `shell`, `view`, `list`, `bench`, `demo`. The only place that calls asyncio.run.

Exit status: 0 when a crawl completes (failed pages are recorded, not fatal), 130 after a
stop by Ctrl-C or SIGTERM, 2 for usage and configuration errors (a one-line message, no
traceback), 1 for anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from .. import __version__
from ..crawl.engine import Crawler
from ..crawl.export import check_output, export_items
from ..crawl.progress import CrawlStats
from ..crawl.warc import is_warc
from ..errors import ConfigError, CrawlerError, SinkFailed, SpiderError
from ..models import Request, Response
from ..records import Ended, ErrorKind, FailedFilter, error_kinds
from ..settings import Settings
from ..spider import Spider, load_spider_class
from ..store import ReadableStore, Summary, is_dsn, open_readonly, open_store
from .sitecrawl import FORMATS, SiteCrawl, under

log = logging.getLogger("crawler")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _pairs(values: Sequence[str], flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        key, eq, raw = value.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"{flag} expects NAME=VALUE, got {value!r}")
        pairs[key.strip()] = raw
    return pairs


class _Parser(argparse.ArgumentParser):
    """argparse, with an unknown option reported by the command it was given to (its usage,
    not the top-level one), and a hint when the option names a setting."""

    commands: dict[str, argparse.ArgumentParser] | None = None

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: None = None
    ) -> argparse.Namespace:
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            command = (self.commands or {}).get(getattr(parsed, "command", None) or "")
            (command or self).error(f"unrecognized arguments: {' '.join(extra)}{_hint(extra)}")
        return parsed


def _hint(extra: Sequence[str]) -> str:
    """'(did you mean -s concurrency=8?)' for `--concurrency 8` and the like."""
    from dataclasses import fields

    names = {f.name for f in fields(Settings)}
    for i, arg in enumerate(extra):
        if not arg.startswith("--"):
            continue
        name, eq, value = arg[2:].partition("=")
        name = name.replace("-", "_")
        if name in names:
            if not eq:
                following = extra[i + 1] if i + 1 < len(extra) else ""
                value = following if following and not following.startswith("--") else "VALUE"
            return f" (did you mean -s {name}={value}? every setting is set with -s NAME=VALUE)"
    return ""


def _parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="python -m crawler", description="An asyncio web crawler that survives kill -9."
    )
    top.add_argument("--version", action="version", version=f"crawler {__version__}")
    verbosity = _Parser(add_help=False)
    group = verbosity.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", help="log every page (DEBUG)")
    group.add_argument("-q", "--quiet", action="store_true", help="log only problems")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # -s and -a, for every command that runs a spider
    spider_options = _Parser(add_help=False)
    for flag, dest, what in (
        ("-s", "settings", "override a setting"),
        ("-a", "arguments", "a spider argument"),
    ):
        spider_options.add_argument(
            flag,
            dest=dest,
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help=f"{what} (repeatable)",
        )

    def output_options(command: argparse.ArgumentParser, *, required: bool = False) -> None:
        files = command.add_mutually_exclusive_group(required=required)
        files.add_argument(
            "-o",
            "--output",
            metavar="FILE",
            help="write items to FILE (.jsonl, .json, .csv, .parquet), or every response to a "
            "web archive (.warc.gz, .warc)",
        )
        files.add_argument(
            "-O",
            "--overwrite-output",
            metavar="FILE",
            help="as -o, but start FILE over (every item of the store, from the first)",
        )

    run = commands.add_parser(
        "run",
        parents=[verbosity, spider_options],
        help="crawl with a spider file (resumes an interrupted crawl)",
    )
    run.add_argument("spider_file", metavar="SPIDER_FILE", help="Python file defining a Spider")
    run.add_argument("--spider", metavar="NAME", help="which spider, when the file has several")
    run.add_argument(
        "--store",
        metavar="PATH|DSN",
        help="store file (default: <spider name>.db), or postgresql://... shared by processes",
    )
    run.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="crawl with N processes (a PostgreSQL store)",
    )
    run.add_argument("--fresh", action="store_true", help="discard the store and start over")
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="queue the URLs that failed again (see the failures command)",
    )
    run.add_argument(
        "--error",
        metavar="KIND[,KIND]",
        help="with --retry-failed: only the failures of these error kinds",
    )
    run.add_argument(
        "--host", metavar="HOST[,HOST]", help="with --retry-failed: only these hosts' failures"
    )
    run.add_argument(
        "--revisit",
        metavar="AGE",
        help="fetch again, conditionally, the pages done more than AGE ago (7d, 12h, 30m, 90s)",
    )
    output_options(run)
    run.add_argument(
        "--events", metavar="FILE", help="append a JSON-lines event log (pages, failures) to FILE"
    )

    crawl = commands.add_parser(
        "crawl",
        parents=[verbosity],
        help="crawl a site without a spider: a record per page, its main content as Markdown",
    )
    crawl.add_argument("url", metavar="URL", help="where to start; the crawl stays on its host")
    crawl.add_argument(
        "--depth",
        type=int,
        metavar="N",
        help="follow links at most N steps from URL (0: URL alone; default: no limit)",
    )
    crawl.add_argument(
        "--under",
        action="store_true",
        help="stay under URL's path (https://site/docs/ crawls /docs/... only), not its host",
    )
    crawl.add_argument(
        "--format",
        choices=FORMATS,
        default="markdown",
        help="each page's main content as markdown (default), text or html",
    )
    crawl.add_argument(
        "-s",
        dest="settings",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a setting (repeatable)",
    )
    crawl.add_argument(
        "--store", metavar="PATH", help="store file (default: crawl-<host>.db; resumes)"
    )
    crawl.add_argument("--fresh", action="store_true", help="discard the store and start over")
    output_options(crawl, required=True)

    export = commands.add_parser("export", parents=[verbosity], help="write a store's items")
    export.add_argument("--store", metavar="PATH|DSN", required=True)
    export.add_argument("--spider", metavar="NAME", help="the crawl's spider (PostgreSQL stores)")
    output_options(export, required=True)
    export.add_argument(
        "--changed",
        action="store_true",
        help="only the items of pages the last revisit found changed",
    )

    stats = commands.add_parser(
        "stats", parents=[verbosity], help="summarize a crawl (running or not) from its store"
    )
    stats.add_argument("--store", metavar="PATH|DSN", required=True)
    stats.add_argument("--spider", metavar="NAME", help="the crawl's spider (PostgreSQL stores)")
    stats.add_argument("--json", action="store_true", help="print JSON for other tools")

    report = commands.add_parser(
        "report", parents=[verbosity], help="write a self-contained HTML report with charts"
    )
    report.add_argument("--store", metavar="PATH|DSN", required=True)
    report.add_argument("--spider", metavar="NAME", help="the crawl's spider (PostgreSQL stores)")
    report.add_argument("-o", "--output", metavar="FILE", required=True, help="an .html file")

    failures = commands.add_parser(
        "failures", parents=[verbosity], help="list failed URLs as JSON lines"
    )
    failures.add_argument("--store", metavar="PATH|DSN", required=True)
    failures.add_argument("--spider", metavar="NAME", help="the crawl's spider (PostgreSQL stores)")
    failures.add_argument("-o", "--output", metavar="FILE", help="write to FILE, not stdout")
    failures.add_argument("--host", help="only this host's failures")
    failures.add_argument(
        "--error",
        metavar="KIND[,KIND]",
        help="only these kinds of error (timeout, http_status, ...)",
    )

    duplicates = commands.add_parser(
        "duplicates",
        parents=[verbosity],
        help="list the pages that repeat one crawled before (-s duplicates=mark) as JSON lines",
    )
    duplicates.add_argument("--store", metavar="PATH|DSN", required=True)
    duplicates.add_argument(
        "--spider", metavar="NAME", help="the crawl's spider (PostgreSQL stores)"
    )
    duplicates.add_argument("-o", "--output", metavar="FILE", help="write to FILE, not stdout")

    bench = commands.add_parser(
        "bench", parents=[verbosity], help="measure crawling speed on a local generated site"
    )
    bench.add_argument("--hosts", type=int, default=4, help="hosts in the site (default 4)")
    bench.add_argument("--pages", type=int, default=500, help="pages per host (default 500)")
    bench.add_argument("-s", dest="settings", action="append", default=[], metavar="NAME=VALUE")

    def spider_file_options(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--file", metavar="SPIDER_FILE", help="use this spider's settings and hooks"
        )
        command.add_argument(
            "--spider", metavar="NAME", help="which spider of --file, when it has several"
        )

    fetch = commands.add_parser(
        "fetch",
        parents=[verbosity, spider_options],
        help="fetch one URL as a crawl would (robots.txt, address guard, settings, hooks)",
    )
    fetch.add_argument("url", metavar="URL")
    spider_file_options(fetch)
    fetch.add_argument("--headers", action="store_true", help="print the response's headers")
    fetch.add_argument("-o", "--output", metavar="FILE", help="write the body to FILE")
    fetch.add_argument(
        "--render",
        action="store_true",
        help="load the page in the headless browser and print its DOM once scripts ran",
    )

    parse = commands.add_parser(
        "parse",
        parents=[verbosity, spider_options],
        help="run one callback on one URL and print what it yields (no store)",
    )
    parse.add_argument("spider_file", metavar="SPIDER_FILE")
    parse.add_argument("url", metavar="URL")
    parse.add_argument("--spider", metavar="NAME", help="which spider, when the file has several")
    parse.add_argument("-c", "--callback", metavar="NAME", help="the callback (default: parse)")
    parse.add_argument("--meta", metavar="JSON", help="the request's meta, a JSON object")
    parse.add_argument(
        "--depth",
        type=int,
        default=0,
        metavar="N",
        help="also follow the requests it yields, N levels deep",
    )
    parse.add_argument("--pipelines", action="store_true", help="run the items through pipelines")
    parse.add_argument("--json", action="store_true", help="print JSON lines for other tools")

    shell = commands.add_parser(
        "shell",
        parents=[verbosity, spider_options],
        help="an interactive console to try selectors on live pages (await fetch(url))",
    )
    shell.add_argument("url", metavar="URL", nargs="?")
    spider_file_options(shell)

    view = commands.add_parser(
        "view",
        parents=[verbosity, spider_options],
        help="fetch one URL as a crawl would and open it in a web browser, as the crawler saw it",
    )
    view.add_argument("url", metavar="URL")
    spider_file_options(view)
    view.add_argument(
        "--render", action="store_true", help="the page as the headless browser rendered it"
    )

    listing = commands.add_parser(
        "list", parents=[verbosity], help="list the spiders in a file or a folder of files"
    )
    listing.add_argument(
        "path",
        metavar="PATH",
        nargs="?",
        default="spiders",
        help="a spider file, or a folder of them (default: spiders)",
    )

    demo = commands.add_parser(
        "demo", parents=[verbosity], help="serve a small local bookshop and crawl it"
    )
    demo.add_argument("--books", type=int, default=100, help="books in the shop (default 100)")
    demo.add_argument("--store", metavar="PATH", default="demo.db")
    output_options(demo)
    demo.add_argument("--events", metavar="FILE", help="append a JSON-lines event log to FILE")
    demo.add_argument("-s", dest="settings", action="append", default=[], metavar="NAME=VALUE")
    demo.add_argument(
        "--serve",
        action="store_true",
        help="only serve the shop (login, account, JSON API too) for spiders to crawl",
    )
    demo.add_argument("--port", type=int, default=0, help="port to serve on (default: any)")
    top.commands = dict(commands.choices)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    try:
        if args.command == "run":
            return _run(args, argv)
        if args.command == "crawl":
            return _site_crawl(args, argv)
        if args.command == "export":
            return _export(args)
        if args.command == "failures":
            return _failures(args)
        if args.command == "duplicates":
            return _listed(args, lambda store: store.duplicates(), "duplicate pages")
        if args.command == "bench":
            return _bench(args)
        if args.command in ("stats", "report"):
            return _stats(args)
        if args.command == "fetch":
            return _fetch(args)
        if args.command == "parse":
            return _parse(args)
        if args.command == "shell":
            return _shell(args)
        if args.command == "view":
            return _view(args)
        if args.command == "list":
            return _list(args)
        return _demo(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CrawlerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:  # a Ctrl-C outside a crawl (loading, exporting, the summary)
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    if args.jobs != 1:
        return _run_jobs(args, list(argv or sys.argv[1:]))
    spider_cls = load_spider_class(args.spider_file, args.spider)
    spider = spider_cls(**_pairs(args.arguments, "-a"))
    settings = Settings().merge(spider_cls.custom_settings).merge(_pairs(args.settings, "-s"))
    output, overwrite = _output(args)
    crawler = Crawler(
        spider,
        settings,
        store_path=args.store,
        fresh=args.fresh,
        retry_failed=_retry_failed(args),
        revisit=age(args.revisit) if args.revisit is not None else None,
        output=output,
        overwrite_output=overwrite,
        events=args.events,
    )
    return _crawl_here(crawler, args.quiet, argv)


def _crawl_here(crawler: Crawler, quiet: bool, argv: Sequence[str] | None) -> int:
    """Run the crawl in this process, as the process's only work, and sum it up; the exit
    code. The summary's resume command is this one (without its run-once flags)."""
    resume = ["python", "-m", "crawler", *_without(list(argv or sys.argv[1:]), _ONCE)]
    # What startup made (modules, classes, the spider) lives as long as the process: out of the
    # collector's sight, it is not scanned again at every full collection (8% less CPU per page
    # on benchmarks/ab.py's workload, 6 interleaved runs)
    gc.freeze()
    young_objects_per_collection()
    stats = _crawl_and_sum_up(crawler, quiet, shlex.join(resume))
    return EXIT_INTERRUPTED if stats.ended == Ended.STOPPED else EXIT_OK


def _site_crawl(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """`crawl URL`: the built-in SiteCrawl spider on URL's host (see tools/sitecrawl.py)."""
    url = args.url
    if args.depth is not None and args.depth < 0:
        raise ConfigError(f"--depth must be 0 or more, got {args.depth}")
    spider = SiteCrawl()
    spider.start_urls = [url]
    if args.under:
        spider.allow = [under(url)]
    spider.format = args.format
    spider.follow = args.depth != 0
    settings = Settings().merge(SiteCrawl.custom_settings).merge(_pairs(args.settings, "-s"))
    if args.depth:
        settings = settings.merge({"max_depth": args.depth})
    output, overwrite = _output(args)
    host = urlsplit(url).hostname or "site"
    crawler = Crawler(
        spider,
        settings,
        store_path=args.store or f"crawl-{host}.db",
        fresh=args.fresh,
        output=output,
        overwrite_output=overwrite,
    )
    return _crawl_here(crawler, args.quiet, argv)


#: Container objects allocated (net of those freed) between two collections of the youngest
#: generation; CPython's default is 700.
YOUNG_GENERATION_THRESHOLD = 10_000


def young_objects_per_collection() -> None:
    """Collect the youngest generation every 10,000 net allocations instead of 700.

    A page's objects (request, response, headers, links, the coroutines carrying them) live
    for the tens of milliseconds the page is in flight: at 700 they outlive two young
    collections and are promoted to the oldest generation, whose growth then sets off a full
    collection every ~1.7 s, each scanning every host's state (150-290 ms at 10,000 hosts:
    13 s of a 92 s broad crawl). At 10,000 they die young; a page makes no reference cycles,
    so the garbage left to the collector stays small (measured: same peak RSS)."""
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, oldest)


def _crawl_and_sum_up(crawler: Crawler, quiet: bool, resume: str) -> CrawlStats:
    """Run the crawl and print its summary, also when a sink's last delivery failed (then the
    error, with the items that wait for the sink, follows the summary)."""
    try:
        stats = asyncio.run(_crawl(crawler, quiet=quiet))
    except SinkFailed:
        _summary(crawler.stats, crawler.store_path, resume)
        raise
    _summary(stats, crawler.store_path, resume)
    return stats


def _output(args: argparse.Namespace) -> tuple[str | None, bool]:
    """The items file of -o or -O, and whether it is started over (-O)."""
    return args.output or args.overwrite_output, bool(args.overwrite_output)


def _retry_failed(args: argparse.Namespace) -> bool | FailedFilter:
    """--retry-failed, limited by --error and --host."""
    if not args.retry_failed:
        if args.error or args.host:
            raise ConfigError("--error and --host choose which failures --retry-failed retries")
        return False
    if not (args.error or args.host):
        return True
    hosts = tuple(h.strip().lower() for h in (args.host or "").split(",") if h.strip())
    return FailedFilter(_kinds(args.error) if args.error else (), hosts)


def _kinds(text: str) -> tuple[ErrorKind, ...]:
    try:
        return error_kinds(text)
    except ValueError as exc:
        raise ConfigError(f"--error: {exc}") from None


#: Options applied once, when the crawl starts: not repeated by the resume command.
_ONCE = {"--fresh": 0, "--retry-failed": 0, "--revisit": 1, "--error": 1, "--host": 1}
_AGE = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def age(text: str) -> float:
    """Seconds in an age like 7d, 12h, 30m, 90s or 90 (seconds)."""
    raw = text.strip().lower()
    unit = _AGE.get(raw[-1:]) if raw else None
    number = raw[:-1] if unit is not None else raw
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ConfigError(f"--revisit takes an age like 7d, 12h, 30m or 90s, got {text!r}")
    return seconds


def _spider_and_settings(
    file: str | None, name: str | None, args: argparse.Namespace
) -> tuple[Spider, Settings]:
    """The spider of `file` (a plain one without), made with `-a`, and its settings with `-s`."""
    if not file and name:
        hint = f"--file {name}" if name.endswith(".py") or Path(name).is_file() else "--file"
        raise ConfigError(
            f"--spider names a spider (as in run); give the file it is in with {hint}"
        )
    spider_cls: type[Spider] = load_spider_class(file, name) if file else _Plain
    spider = spider_cls(**_pairs(args.arguments, "-a"))
    settings = Settings().merge(spider_cls.custom_settings).merge(_pairs(args.settings, "-s"))
    return spider, settings


class _Plain(Spider):
    """The spider of `fetch` without --file: the default settings, no hooks."""

    name = "fetch"


def _fetch_one(args: argparse.Namespace) -> Response:
    """The response to `args.url`, fetched (or rendered, with --render) as a crawl of the
    spider of --file would."""
    spider, settings = _spider_and_settings(args.file, args.spider, args)

    async def get() -> Response:
        target = Request(args.url, render=True) if args.render else args.url
        async with Crawler(spider, settings).requester([args.url]) as requester:
            return await requester.fetch(target)

    return asyncio.run(get())


def _fetch(args: argparse.Namespace) -> int:
    """`fetch URL`: the body to stdout (or -o), the status (and headers) to stderr."""
    response = _fetch_one(args)
    print(
        f"{response.status} {response.url} ({len(response.body)} bytes"
        + (", from the HTTP cache)" if response.cached else ")"),
        file=sys.stderr,
    )
    if args.headers:
        for key, value in response.headers.multi_items():
            print(f"{key}: {value}", file=sys.stderr)
    if args.output:
        Path(args.output).write_bytes(response.body)
    else:
        sys.stdout.buffer.write(response.body)
        sys.stdout.flush()
    return EXIT_OK


def _parse(args: argparse.Namespace) -> int:
    """`parse SPIDER_FILE URL`: one callback on one URL (and, with --depth, on what it yields),
    printed; nothing is stored."""
    from ..page.devtools import Requester

    spider, settings = _spider_and_settings(args.spider_file, args.spider, args)
    meta = _meta(args.meta)
    if args.depth < 0:
        raise ConfigError(f"--depth takes a number of levels, at least 0, got {args.depth}")
    if args.callback:
        spider.callback(args.callback)  # an unknown name fails now, before any request
    out = sys.stdout

    def show(kind: str, page: Response, value: Any) -> None:
        if args.json:
            if kind == "item":
                record = {"type": "item", "page": page.url, "item": value}
            else:
                record = {"type": "request", "page": page.url, **_request_record(value)}
            out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        elif kind == "item":
            out.write(f"  item {json.dumps(value, ensure_ascii=False, default=str)}\n")
        else:
            r = _request_record(value)
            out.write(f"  request {r['method']} {r['url']} -> {r['callback']}\n")

    async def crawl_from(requester: Requester) -> int:
        level = [Request(args.url, meta=meta)]
        first = True
        seen: set[tuple[str, str]] = set()
        pages = 0
        for depth in range(args.depth + 1):
            following: list[Request] = []
            for request in level:
                if (request.method, request.url) in seen:
                    continue
                seen.add((request.method, request.url))
                callback = requester.callback(args.callback if first else None, request)
                first = False
                response = await requester.fetch(request)
                pages += 1
                skipped = requester.wants(request, response)
                if not args.json:
                    name = getattr(callback, "__name__", "callback")
                    out.write(f"{response.status} {response.url} (depth {depth}, {name})\n")
                if skipped is not None:
                    log.warning("%s: the callback is not run (%s)", response.url, skipped)
                    continue
                items, requests, counters = await requester.run(
                    callback, response, pipelines=args.pipelines
                )
                for item in items:
                    show("item", response, _plain(item))
                for yielded in requests:  # (the ones a crawl would queue)
                    show("request", response, yielded)
                    following.append(yielded)
                for name, n in counters.items():
                    log.info("%s: %s %d", response.url, name, n)
            level = following
        return pages

    async def go() -> int:
        async with Crawler(spider, settings).requester([args.url]) as requester:
            if args.pipelines:
                await requester.open_pipelines()
            try:
                return await crawl_from(requester)
            finally:
                if args.pipelines:
                    await requester.close_pipelines()

    try:
        asyncio.run(go())
    except SpiderError as exc:
        if exc.__cause__ is not None:  # the spider author's own code: show where it failed
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        raise
    return EXIT_OK


def _shell(args: argparse.Namespace) -> int:
    """`shell [URL]`: the console (see shell.py), with the spider's settings and hooks."""
    from . import shell

    spider, settings = _spider_and_settings(args.file, args.spider, args)
    # what is fetched here is typed by the user, who may name a local site at any time
    crawler = Crawler(spider, settings.merge({"allow_private_networks": True}))
    shell.run(lambda: crawler.requester([args.url] if args.url else []), args.url)
    return EXIT_OK


def _view(args: argparse.Namespace) -> int:
    """`view URL`: the page as the crawler got it (or rendered it), in a web browser."""
    import webbrowser

    from ..page.devtools import page_file

    response = _fetch_one(args)
    path = page_file(response)
    print(f"{response.status} {response.url} ({len(response.body)} bytes): {path}", file=sys.stderr)
    if not webbrowser.open(path.as_uri()):
        print("no web browser to open it with: open the file above", file=sys.stderr)
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    """`list [PATH]`: each spider of a file, or of the .py files of a folder: its name, class
    and file. A file that cannot be loaded is named with its error (exit 1)."""
    from ..spider import spider_classes

    path = Path(args.path)
    if path.is_dir():
        files = sorted(f for f in path.glob("*.py") if not f.name.startswith("_"))
    elif path.is_file():
        files = [path]
    else:
        raise ConfigError(f"no spider file or folder at {path}")
    rows, broken = [], 0
    for file in files:
        try:
            classes = spider_classes(file)
        except ConfigError as exc:
            if path.is_dir() and str(exc).endswith("defines no Spider subclass"):
                continue  # a helper module beside the spiders (pipelines.py...)
            print(f"error: {exc}", file=sys.stderr)
            broken += 1
            continue
        rows += [(cls.name or "(no name)", cls.__name__, str(file)) for cls in classes]
    width = max((len(name) for name, _, _ in rows), default=0)
    for name, cls, where in sorted(rows):
        print(f"{name.ljust(width)}  {cls} in {where}")
    if not rows and not broken:
        print(f"no spiders in {path}", file=sys.stderr)
    return EXIT_ERROR if broken else EXIT_OK


def _meta(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"--meta must be a JSON object: {exc}") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"--meta must be a JSON object, got {type(meta).__name__}")
    return meta


def _plain(item: Any) -> Any:
    """An item as JSON-ready data."""
    from ..page.pipelines import item_json

    return item if isinstance(item, dict) else json.loads(item_json(item, ""))


def _request_record(request: Request) -> dict[str, Any]:
    return {
        "method": request.method,
        "url": request.url,
        "callback": request.callback_name,
        "meta": request.meta,
        "depth": request.depth,
    }


def _run_jobs(args: argparse.Namespace, argv: list[str]) -> int:
    """`run -j N`: N processes crawl from one shared store; `--fresh` is applied once, first,
    and `-o` written once, when all are done."""
    if args.jobs < 1:
        raise ConfigError(f"-j takes a number of processes, at least 1, got {args.jobs}")
    child = _without(
        argv,
        {
            "-j": 1,
            "--jobs": 1,
            "--fresh": 0,
            "-o": 1,
            "--output": 1,
            "-O": 1,
            "--overwrite-output": 1,
            "--revisit": 1,
        },
    )
    if sys.stderr.isatty():
        child.append("-q")  # N live views would draw over each other: the summary follows
    # On Linux the processes are forks of this one, made before the spider is loaded: they
    # start with the crawler imported (about 0.25 s of CPU each would spend again) and load
    # the spider themselves (whatever its module opens, a file, a connection, a thread, is
    # never shared), once --fresh and --revisit are done here
    forks = _Forks(args.jobs, child) if sys.platform == "linux" else None
    try:
        spider_cls = load_spider_class(args.spider_file, args.spider)
        spider = spider_cls(**_pairs(args.arguments, "-a"))
        store = args.store or f"{spider.name}.db"
        if not is_dsn(store):
            raise ConfigError(
                f"-j {args.jobs} needs a store that processes share: a SQLite file is written "
                "by one process at a time. Use --store postgresql://user@host/db (see the README)"
            )
        settings = Settings().merge(spider_cls.custom_settings).merge(_pairs(args.settings, "-s"))
        if settings.warc_file or is_warc(_output(args)[0] or ""):
            raise ConfigError(
                f"-j {args.jobs}: a web archive is written by one process (run without -j)"
            )
        output = check_output(_output(args)[0] or "") if _output(args)[0] else None
        if args.fresh:
            asyncio.run(_start_over(store, spider.name, settings.lease_ttl))
        if args.revisit is not None:  # once, here: each process would requeue what others did
            asyncio.run(_requeue_stale(store, spider.name, settings.lease_ttl, age(args.revisit)))
    except BaseException:
        if forks is not None:
            forks.cancel()
        raise
    if forks is not None:
        waits = forks.start()
    else:
        waits = [
            subprocess.Popen([sys.executable, "-m", "crawler", *child]).wait
            for _ in range(args.jobs)
        ]
    log.info("crawling with %d processes from %s", args.jobs, store)
    codes = []
    for wait in waits:
        while True:
            try:
                codes.append(wait())
                break
            except KeyboardInterrupt:  # the processes got the Ctrl-C too: wait for them
                continue

    async def finish() -> tuple[Summary, str]:
        reader = await open_readonly(store, spider.name)
        try:
            if output is not None and all(code == EXIT_OK for code in codes):
                count = await export_items(reader.items, output)
                print(f"wrote {count} items to {output}", file=sys.stderr)
            return await reader.summary(), reader.location
        finally:
            await reader.close()

    summary, location = asyncio.run(finish())
    c = summary.counts
    print(
        f"{args.jobs} processes: {sum(1 for code in codes if code == EXIT_OK)} ended well; "
        f"store {location}: {c.done} done, {c.failed} failed, {c.pending} queued, "
        f"{c.items} items",
        file=sys.stderr,
    )
    return max(codes, key=lambda code: (code != EXIT_OK, code))


class _Forks:
    """The processes of `run -j N` on Linux: forked at once, each waiting at a gate (a pipe)
    until `start()` opens it; `cancel()` closes it, and they leave without crawling."""

    def __init__(self, count: int, argv: list[str]) -> None:
        gate, self._opener = os.pipe()
        self._pids: list[int] = []
        for _ in range(count):
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                os.close(self._opener)
                _forked(gate, argv)  # never returns
            self._pids.append(pid)
        os.close(gate)

    def start(self) -> list[Callable[[], int]]:
        os.write(self._opener, b"x" * len(self._pids))  # a byte for each
        os.close(self._opener)
        return [functools.partial(_exit_code, pid) for pid in self._pids]

    def cancel(self) -> None:
        os.close(self._opener)
        for pid in self._pids:
            _exit_code(pid)


def _forked(gate: int, argv: list[str]) -> None:
    """A forked process of `run -j N`: wait at the gate, crawl, and leave without the parent's
    exit handlers."""
    code = 1
    try:
        if not os.read(gate, 1):  # closed without a byte: the parent stopped, and says why
            code = EXIT_OK
        else:
            os.close(gate)
            logging.getLogger().handlers.clear()  # main() configures logging for itself
            code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except BaseException:
        traceback.print_exc()
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _exit_code(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


async def _start_over(dsn: str, spider: str, lease_ttl: float) -> None:
    store = await open_store(dsn, spider, fresh=True, lease_ttl=lease_ttl)
    await store.close()


async def _requeue_stale(dsn: str, spider: str, lease_ttl: float, seconds: float) -> None:
    store = await open_store(dsn, spider, lease_ttl=lease_ttl)
    try:
        again = await store.requeue_stale(time.time() - seconds)
        log.info("revisiting %d pages done more than %g s ago", again, seconds)
    finally:
        await store.close()


def _without(argv: list[str], options: dict[str, int]) -> list[str]:
    """`argv` less the given options (each with its number of values; --opt=value too)."""
    kept, skip = [], 0
    for arg in argv:
        if skip:
            skip -= 1
            continue
        name = arg.split("=", 1)[0]
        if name in options:
            skip = options[name] if "=" not in arg else 0
            continue
        if arg.startswith("-j") and arg[2:].isdigit():  # -j4
            continue
        kept.append(arg)
    return kept


async def _crawl(crawler: Crawler, *, quiet: bool) -> CrawlStats:
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.warning(
                "stopping: finishing pages in flight (up to %g s); press Ctrl-C again to stop now",
                crawler.settings.shutdown_grace,
            )
            crawler.stop()
        else:
            log.warning("stopping now")
            crawler.stop(force=True)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        if quiet:
            return await crawler.run()
        from .display import showing  # rich: only when there is something to show

        async with showing(crawler.progress, stream=sys.stderr, live=sys.stderr.isatty()):
            return await crawler.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _summary(stats: CrawlStats, store: str | Path, resume: str) -> None:
    again = (
        f"{stats.failed_total} failed URLs: --retry-failed queues them again; "
        if stats.failed_total
        else ""
    )
    lines: dict[str, str] = {
        Ended.COMPLETE: "crawl complete",
        Ended.ALREADY_COMPLETE: f"crawl already complete: nothing left to fetch ({again}--fresh "
        "starts over)",
        Ended.MAX_PAGES: "crawl reached max_pages",
        Ended.STOPPED: "crawl stopped",
    }
    skipped = (
        f", {stats.robots_disallowed} disallowed by robots.txt" if stats.robots_disallowed else ""
    )
    skipped_total = (
        f", {stats.robots_disallowed_total} disallowed by robots.txt"
        if stats.robots_disallowed_total
        else ""
    )
    print(
        f"{lines.get(stats.ended, stats.ended)}: {stats.pages} pages ({stats.failed} failed, "
        f"{stats.retried} retries{skipped}), {stats.items} items"
        + (f" ({stats.dropped_items} dropped by pipelines)" if stats.dropped_items else "")
        + (f", {stats.cached} pages from the HTTP cache" if stats.cached else "")
        + (
            f", {stats.rendered} rendered ({stats.render_blocked} of their requests refused)"
            if stats.rendered
            else ""
        )
        + (
            f", revisited: {stats.unchanged} unchanged, {stats.changed} changed, {stats.gone} gone"
            if stats.unchanged or stats.changed or stats.gone
            else ""
        )
        + (
            f", {stats.hosts_evicted} idle hosts evicted (at most {stats.hosts_in_memory} "
            "in memory)"
            if stats.hosts_evicted
            else ""
        )
        + (
            f", {stats.dns.lookups} DNS lookups ({stats.dns.seconds:.1f} s"
            + (f", {stats.dns.failed} failed)" if stats.dns.failed else ")")
            if stats.dns.lookups
            else ""
        )
        + f" in {stats.elapsed:.1f} s "
        f"({stats.pages_per_second:.1f} pages/s)\n"
        f"store {store}: {stats.done_total} URLs done, {stats.failed_total} failed{skipped_total}, "
        f"{stats.queued} queued, {stats.items_total} items",
        file=sys.stderr,
    )
    if stats.ended == Ended.STOPPED or (stats.ended == Ended.MAX_PAGES and stats.queued):
        print(f"resume with: {resume}", file=sys.stderr)


def _export(args: argparse.Namespace) -> int:
    async def export() -> int:
        store = await open_readonly(args.store, args.spider)
        try:
            if args.changed and store.outdated:
                raise ConfigError(
                    f"{args.store} was written by an older version of the crawler: it has no "
                    "revisits yet"
                )
            return await export_items(
                store.changed_items if args.changed else store.items, args.output
            )
        finally:
            await store.close()

    args.output = _output(args)[0]  # export always writes the file whole: -o and -O alike
    check_output(args.output)
    count = asyncio.run(export())
    print(f"wrote {count} items to {args.output}", file=sys.stderr)
    return EXIT_OK


def _stats(args: argparse.Namespace) -> int:
    from .report import render_html, stats_text, summary_dict

    async def summarize() -> tuple[Summary, bool]:
        store = await open_readonly(args.store, args.spider)
        try:
            if store.outdated:
                raise ConfigError(
                    f"{args.store} was written by an older version of the crawler: resume the "
                    "crawl once (python -m crawler run ...) to bring it up to date"
                )
            return await store.summary(), await store.in_use()
        finally:
            await store.close()

    if args.command == "report" and not args.output.lower().endswith((".html", ".htm")):
        raise ConfigError(f"cannot write {args.output}: the report is an .html file")
    summary, running = asyncio.run(summarize())
    now = time.time()
    if args.command == "stats":
        if args.json:
            print(json.dumps(summary_dict(summary, running=running, now=now), indent=2))
        else:
            print(stats_text(summary, running=running, now=now))
        return EXIT_OK
    page = render_html(summary, store=args.store, running=running, now=now)
    output = Path(args.output)
    partial = output.with_name(f".{output.name}.partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(output)
    print(f"wrote the report to {output}", file=sys.stderr)
    return EXIT_OK


def _failures(args: argparse.Namespace) -> int:
    kinds: tuple[str | None, ...] = _kinds(args.error) if args.error else (None,)

    async def failures(store: ReadableStore) -> AsyncIterator[dict[str, Any]]:
        for kind in kinds:
            async for failure in store.failures(host=args.host, error=kind):
                yield failure

    return _listed(args, failures, "failed URLs")


def _listed(
    args: argparse.Namespace,
    rows: Callable[[ReadableStore], AsyncIterator[dict[str, Any]]],
    what: str,
) -> int:
    """Write `rows` of the store `args.store` as JSON lines (to `args.output`, or stdout)."""

    async def listing(out: TextIO) -> int:
        store = await open_readonly(args.store, args.spider)
        count = 0
        try:
            async for row in rows(store):
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
        finally:
            await store.close()
        return count

    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            count = asyncio.run(listing(out))
    else:
        count = asyncio.run(listing(sys.stdout))
    print(f"{count} {what}", file=sys.stderr)
    return EXIT_OK


def _bench(args: argparse.Namespace) -> int:
    from .bench import BENCH_SETTINGS, run_bench

    if not 1 <= args.hosts <= 200 or args.pages < 1:
        raise ConfigError("--hosts must be within 1..200 and --pages at least 1")
    settings = BENCH_SETTINGS.merge(_pairs(args.settings, "-s"))
    result = run_bench(args.hosts, args.pages, settings)
    print(result.report())
    return EXIT_OK if result.stats.ended == Ended.COMPLETE else EXIT_INTERRUPTED


def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoShop, DemoSpider, serve  # its site and server: demo only

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be within 0..65535, got {args.port}")
    if args.serve:
        try:
            with serve(DemoShop(args.books), port=args.port) as base:
                print(
                    f"demo shop at {base}: log in at {base}login (reader/secret), JSON search "
                    f"API at POST {base}api/search; Ctrl-C stops",
                    file=sys.stderr,
                    flush=True,
                )
                with contextlib.suppress(KeyboardInterrupt):
                    threading.Event().wait()
        except OSError as exc:
            raise ConfigError(f"cannot serve the demo shop on port {args.port}: {exc}") from None
        return EXIT_OK
    settings = Settings().merge(_pairs(args.settings, "-s"))
    output, overwrite = _output(args)
    if output:
        check_output(output)
    shop = DemoShop(args.books)
    with serve(shop, port=args.port) as base:
        log.info("demo bookshop serving at %s", base)
        spider: Spider = DemoSpider(start_urls=base)
        crawler = Crawler(
            spider,
            settings,
            store_path=args.store,
            fresh=True,
            output=output,
            overwrite_output=overwrite,
            events=args.events,
        )
        stats = _crawl_and_sum_up(crawler, args.quiet, "python -m crawler demo")
    print(f"the shop served {sum(shop.hits.values())} requests", file=sys.stderr)
    if not output:
        print(
            f"export the items with: python -m crawler export --store {args.store} -o items.jsonl",
            file=sys.stderr,
        )
    return EXIT_INTERRUPTED if stats.ended == Ended.STOPPED else EXIT_OK
