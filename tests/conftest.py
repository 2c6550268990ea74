from __future__ import annotations

import sqlite3
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from tests.sites import GraphSite


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
