from __future__ import annotations

import fcntl
import os
import sqlite3
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web

import crawler
from tests.sites import ForwardProxy, GraphSite


def pytest_report_header() -> str:
    """Which crawler is under test: the checkout's, or an installed wheel's (CI tests that)."""
    return f"crawler {crawler.__version__} from {Path(crawler.__file__).parent}"


@pytest.fixture
async def graph() -> AsyncIterator[GraphSite]:
    site = GraphSite(hosts=4, pages=75, links=6, delay=0.002)
    await site.start()
    yield site
    await site.stop()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "crawl.db"


def rows(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Read a store directly (tests only)."""
    with sqlite3.connect(path) as db:
        return db.execute(sql, params).fetchall()


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    """A forward proxy on 127.0.0.1 (plain requests and CONNECT tunnels), logging each."""
    forward = ForwardProxy()
    await forward.start()
    yield forward
    await forward.stop()


@pytest.fixture
async def https_site(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """A two-page site on https://localhost with a certificate from a throwaway CA; yields
    its start URL and the CA's certificate file."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    async def page(request: web.Request) -> web.Response:
        link = '<a href="/next">next</a>' if request.path == "/" else ""
        return web.Response(
            text=f"<html><title>{request.path}</title><body>{link}</body></html>",
            content_type="text/html",
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "localhost", 0, ssl_context=server)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://localhost:{port}/", ca_file
    finally:
        await runner.cleanup()


#: The PostgreSQL server tests use (the project's machines run one; see the README).
POSTGRES_DSN = os.environ.get("CRAWLER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def postgres_dsn(postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The test server's DSN, for one test at a time: under pytest-xdist the tests that use
    the server take turns (a file lock shared by the workers). The item feed waits for every
    older transaction of the server (its snapshot's xmin), so another test's open transaction
    would hold this one's items back."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield postgres_server
        return
    lock = tmp_path_factory.getbasetemp().parent / "postgres.lock"
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            yield postgres_server
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The test server's DSN. In CI (CI=true) an unreachable server fails the tests that need
    it; elsewhere they are skipped with a one-line reason."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(POSTGRES_DSN)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 5).close()
    except OSError as exc:
        message = f"PostgreSQL at {POSTGRES_DSN} is unreachable ({exc}); set CRAWLER_TEST_POSTGRES"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return POSTGRES_DSN


@pytest.fixture
def pg_spider(postgres_dsn: str) -> Iterator[str]:
    """A spider name whose PostgreSQL schema is this test's own (dropped afterwards)."""
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    drop_schema(postgres_dsn, name)


def drop_schema(dsn: str, spider: str) -> None:
    """Drop a spider's crawl from the test server (from any thread, loop or none)."""
    import asyncio
    import threading

    import asyncpg

    from crawler.store.postgres import schema_name

    async def drop() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema_name(spider)}" CASCADE')
        finally:
            await connection.close()

    thread = threading.Thread(target=asyncio.run, args=(drop(),))
    thread.start()
    thread.join()
