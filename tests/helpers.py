"""Helpers shared by test modules."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from crawler import Crawler, CrawlStats, Settings, Spider
from crawler.clock import Clock
from crawler.store import Counts, Summary, open_readonly


class ManualClock(Clock):
    """A clock that stands still until a test moves it (`clock.t = ...`); waits are real."""

    def __init__(self, t: float) -> None:
        super().__init__()
        self.t = t

    def now(self) -> float:
        return self.t


Handler = Callable[[httpx.Request], httpx.Response]


async def public_resolver(host: str) -> list[str]:
    """Every made-up host of these tests resolves to one public address (never contacted)."""
    return ["93.184.215.14"]


class LocalDns(asyncio.DatagramProtocol):
    """A DNS server on 127.0.0.1 for tests: answers A queries for `names` (name -> (IPv4
    address, TTL)), NXDOMAIN for any other name, no records for other types. `queries` keeps
    the names asked for (A queries only). Start with `await LocalDns.start(names)`."""

    def __init__(self, names: dict[str, tuple[str, int]]) -> None:
        self.names = names
        self.queries: list[str] = []
        self.server = ""
        self._transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def start(cls, names: dict[str, tuple[str, int]]) -> LocalDns:
        dns = cls(names)
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: dns, local_addr=("127.0.0.1", 0)
        )
        dns.server = f"127.0.0.1:{transport.get_extra_info('sockname')[1]}"
        return dns

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        query_id = struct.unpack(">H", data[:2])[0]
        i, labels = 12, []
        while data[i]:
            labels.append(data[i + 1 : i + 1 + data[i]].decode())
            i += data[i] + 1
        qtype = struct.unpack(">H", data[i + 1 : i + 3])[0]
        question = data[12 : i + 5]
        name = ".".join(labels).lower()
        entry = self.names.get(name)
        answers = b""
        if entry is not None and qtype == 1:
            self.queries.append(name)
            address, ttl = entry
            answers = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, ttl, 4) + socket.inet_aton(address)
        flags = 0x8180 | (0 if entry is not None else 3)  # a response; NXDOMAIN if unknown
        header = struct.pack(">HHHHHH", query_id, flags, 1, 1 if answers else 0, 0, 0)
        assert self._transport is not None
        self._transport.sendto(header + question + answers, addr)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def html(body: str) -> httpx.Response:
    return httpx.Response(200, html=f"<html><body>{body}</body></html>")


async def crawl(spider: Spider, handler: Handler, path: Path, **settings: Any) -> CrawlStats:
    options = {"obey_robots": False, "retry_backoff": 0.0, "concurrency": 4, **settings}
    crawler = Crawler(
        spider,
        Settings().merge(options),
        store_path=path,
        transport=httpx.MockTransport(handler),
        resolver=public_resolver,
    )
    return await crawler.run()


async def crawler_cli(*args: str, cwd: Path) -> tuple[int, str, str]:
    """`python -m crawler ARGS` in `cwd`, without blocking the test's event loop (its sites
    keep serving): the exit code, stdout and stderr. At most 120 s."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crawler",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode(), err.decode()


async def fetched_per_host(store: Any) -> dict[str, int]:
    """Pages fetched per host, for hosts with any, through the reader protocol."""
    totals = await store.host_totals()
    return {host: counts.fetched for host, counts in totals.items() if counts.fetched}


# -- a crawl's store, read through the reader protocol (what stats, export and report read) --


async def stored_items(path: Path | str) -> list[str]:
    """The store's items (JSON text), in commit order."""
    store = await open_readonly(path)
    try:
        return [item async for item in store.items()]
    finally:
        await store.close()


async def stored_counts(path: Path | str) -> Counts:
    store = await open_readonly(path)
    try:
        return await store.counts()
    finally:
        await store.close()


async def stored_failures(path: Path | str, error: str | None = None) -> list[dict[str, Any]]:
    """The failed requests (url, error, status, attempts, message), in discovery order."""
    store = await open_readonly(path)
    try:
        return [failure async for failure in store.failures(error=error)]
    finally:
        await store.close()


async def stored_summary(path: Path | str) -> Summary:
    store = await open_readonly(path)
    try:
        return await store.summary()
    finally:
        await store.close()


class TlsNginx:
    """nginx serving a small site over TLS (HTTP/2 and HTTP/1.1 by ALPN) on 127.0.0.1, with a
    certificate for "localhost" from a throwaway CA (`ca_file`). Each request is logged as a
    JSON line: protocol, the cipher suites the client offered ($ssl_ciphers), User-Agent,
    Accept-Encoding, Cookie and URI (`requests()`). nginx daemonizes once it listens: no waiting."""

    PAGES = 6

    def __init__(self, root: Path) -> None:
        import trustme

        self.root = root
        ca = trustme.CA()
        self.ca_file = root / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        cert = ca.issue_cert("localhost")
        cert.private_key_pem.write_to_path(str(root / "key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
        site = root / "site"
        site.mkdir()
        for n in range(self.PAGES):
            links = "".join(f'<a href="/{k}.html">{k}</a>' for k in range(self.PAGES) if k != n)
            filler = "<p>Some text to compress, again and again.</p>" * 40
            (site / f"{n}.html").write_text(
                f"<html><head><title>page {n}</title></head><body>{links}{filler}</body></html>"
            )
        (site / "robots.txt").write_text("User-agent: *\nAllow: /\n")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = root / "access.log"
        self.conf = root / "nginx.conf"
        user = " user root;" if hasattr(os, "geteuid") and os.geteuid() == 0 else ""
        self.conf.write_text(
            f"worker_processes 1; pid {root}/nginx.pid; error_log {root}/error.log;{user}\n"
            "events { worker_connections 256; }\n"
            'http { log_format j escape=json \'{"protocol":"$server_protocol",'
            '"ciphers":"$ssl_ciphers","agent":"$http_user_agent",'
            '"encoding":"$http_accept_encoding","cookie":"$http_cookie","uri":"$request_uri"}\';'
            f" access_log {self.log} j; default_type text/html;"
            " types { text/html html; text/plain txt; }"
            " gzip on; gzip_min_length 100;\n"
            f" server {{ listen 127.0.0.1:{self.port} ssl http2;"
            f" ssl_certificate {root}/cert.pem; ssl_certificate_key {root}/key.pem;"
            f" root {site}; location / {{ }}"
            # the start page sets a cookie: the crawl's jar sends it with the later pages
            ' location = /0.html { add_header Set-Cookie "sid=s3cret; Path=/"; } } }\n'
        )

    @property
    def start(self) -> str:
        return f"https://localhost:{self.port}/0.html"

    def __enter__(self) -> TlsNginx:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        subprocess.run([nginx, "-c", str(self.conf)], check=True, capture_output=True)
        return self

    def __exit__(self, *exc: object) -> None:
        pid = int((self.root / "nginx.pid").read_text())
        os.kill(pid, signal.SIGQUIT)

    def requests(self) -> list[dict[str, str]]:
        """What nginx logged so far (it writes each line as the request ends)."""
        text = self.log.read_text() if self.log.exists() else ""
        return [json.loads(line) for line in text.splitlines()]


def has_nginx() -> bool:
    return bool(shutil.which("nginx")) or Path("/usr/sbin/nginx").exists()
