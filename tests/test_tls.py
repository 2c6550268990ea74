"""HTTPS: certificates are checked against the system's CAs, which load beside startup
(crawler/tls.py) instead of holding up the first request."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from crawler import Crawler, Request, Response, Settings, Spider
from crawler.net import tls
from tests.helpers import Handler, public_resolver
from tests.test_cli import SPIDER, acli


async def test_deferred_loading_ends_where_loading_at_once_does() -> None:
    with tls.deferred_verify_paths():
        context = ssl.create_default_context()
        assert context.cert_store_stats()["x509_ca"] == 0  # recorded, not loaded yet
    await tls.verify_paths_loaded()
    assert context.cert_store_stats() == ssl.create_default_context().cert_store_stats()


def test_other_threads_load_at_once() -> None:
    seen: list[dict[str, int]] = []

    def other() -> None:
        seen.append(ssl.create_default_context().cert_store_stats())

    with tls.deferred_verify_paths():
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert seen == [ssl.create_default_context().cert_store_stats()]


async def test_a_failed_load_is_raised_to_whoever_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tls, "_errors", [])
    monkeypatch.setattr(tls, "_loaders", [])

    def broken(context: ssl.SSLContext) -> None:
        raise ssl.SSLError("bad bundle")

    monkeypatch.setattr(ssl.SSLContext, "set_default_verify_paths", broken)
    with tls.deferred_verify_paths():
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).set_default_verify_paths()  # recorded
    with pytest.raises(ssl.SSLError, match="bad bundle"):
        await tls.verify_paths_loaded()


@pytest.fixture
def loading(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """A CA loading still at work until the event is set (by the test, from the event loop)."""
    done = threading.Event()
    loader = threading.Thread(target=done.wait, daemon=True)
    loader.start()
    monkeypatch.setattr(tls, "_loaders", [loader])
    yield done
    done.set()


def page(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, html="<html><body>ok</body></html>")


def mock_crawler(spider: Spider, handler: Handler, store_path: Path) -> Crawler:
    return Crawler(
        spider,
        Settings(obey_robots=False),
        store_path=store_path,
        transport=httpx.MockTransport(handler),
        resolver=public_resolver,
    )


# Spider code may call aiohttp on its default SSL contexts, so it runs only once they are
# loaded. Without the wait, these spiders would run first: nothing yields to the event loop
# (which sets the event) between the crawl's start and start_requests, or between a mock
# response and its callback.


async def test_start_requests_runs_once_the_certificates_are_loaded(
    loading: threading.Event, store_path: Path
) -> None:
    seen: list[bool] = []

    class Seeder(Spider):
        name = "seeder"

        def start_requests(self) -> list[Request]:
            seen.append(loading.is_set())
            return [Request("http://a.com/")]

        async def parse(self, response: Response) -> None:
            pass

    asyncio.get_running_loop().call_soon(loading.set)
    stats = await mock_crawler(Seeder(), page, store_path).run()
    assert (stats.pages, seen) == (1, [True])


async def test_callbacks_run_once_the_certificates_are_loaded(
    loading: threading.Event, store_path: Path
) -> None:
    seen: list[bool] = []

    class Parser(Spider):
        name = "parser"
        start_urls = ["http://a.com/"]

        async def parse(self, response: Response) -> None:
            seen.append(loading.is_set())

    def handler(request: httpx.Request) -> httpx.Response:
        asyncio.get_running_loop().call_soon(loading.set)
        return page(request)

    stats = await mock_crawler(Parser(), handler, store_path).run()
    assert (stats.pages, seen) == (1, [True])


async def test_https_crawl_verifies_against_the_system_cas(
    https_site: tuple[str, Path], tmp_path: Path
) -> None:
    start, ca_file = https_site
    (tmp_path / "graph.py").write_text(SPIDER)
    args = ["run", "graph.py", "-a", f"start_urls={start}", "-s", "max_retries=0", "-q"]

    # the CA is the system's (SSL_CERT_FILE): both pages are fetched
    env = {**os.environ, "SSL_CERT_FILE": str(ca_file)}
    proc = await acli(*args, "--store", "trusted.db", "-o", "items.jsonl", cwd=tmp_path, env=env)
    _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    items = [json.loads(line) for line in (tmp_path / "items.jsonl").read_text().splitlines()]
    assert sorted(item["title"] for item in items) == ["/", "/next"]

    # the system's own CAs do not vouch for it: the page fails, nothing is fetched past it
    proc = await acli(*args, "--store", "untrusted.db", cwd=tmp_path)
    _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    assert "1 failed" in stderr.decode()
    assert "certificate" in stderr.decode().lower()


def test_a_fork_waits_for_the_loading() -> None:
    expected = ssl.create_default_context().cert_store_stats()
    with tls.deferred_verify_paths():
        context = ssl.create_default_context()
    pid = os.fork()  # at once: the loader is still at work
    if pid == 0:
        os._exit(0 if context.cert_store_stats() == expected else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_interpreter_waits_for_the_loading_before_it_exits(tmp_path: Path) -> None:
    # A loader thread still inside OpenSSL while the interpreter frees aiohttp's contexts at
    # exit crashed the process (SIGSEGV, ~1 exit in 50 right after the import). With a slow
    # load, the exit must wait for it: the load finishes and the process exits cleanly.
    script = tmp_path / "quick_exit.py"
    script.write_text(
        "import ssl, time\n"
        "original = ssl.SSLContext.set_default_verify_paths\n"
        "def slow(context):\n"
        "    time.sleep(0.2)\n"
        "    original(context)\n"
        "    print('loaded', flush=True)\n"
        "ssl.SSLContext.set_default_verify_paths = slow\n"
        "import sys\n"
        "sys.orig_argv = [sys.executable, '-m', 'crawler']\n"  # as the command line does
        "import crawler.net.addresses\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    # aiohttp's verifying default context (the one that verifies nothing needs no CAs)
    assert result.stdout.count("loaded") == 1


def test_a_program_that_imports_crawler_gets_aiohttp_as_it_is() -> None:
    """Only the command line defers aiohttp's CA loading: a program of the user's may use
    aiohttp's default contexts the moment it has imported crawler."""
    script = (
        "import crawler, crawler.net.tls, aiohttp.connector as c\n"
        "assert not crawler.net.tls._loaders\n"
        "assert c._SSL_CONTEXT_VERIFIED.cert_store_stats()['x509_ca'] > 0\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_the_command_line_is_told_by_how_it_was_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "orig_argv", [sys.executable, "-X", "dev", "-m", "crawler", "run"])
    assert tls.command_line()
    monkeypatch.setattr(sys, "orig_argv", [sys.executable, "-m", "pytest"])
    monkeypatch.setattr(sys, "argv", ["/venv/bin/crawler", "run"])
    assert tls.command_line()
    monkeypatch.setattr(sys, "argv", ["app.py"])
    assert not tls.command_line()
