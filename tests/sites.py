"""Test sites: a generated link graph served by aiohttp on several 127.0.0.x hosts, in the test's
own event loop. The server counts what happened (hits per URL, peak in-flight per host)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import random
import socket
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web


async def serve(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    hosts: Iterable[str],
    runners: list[web.AppRunner],
    **options: Any,
) -> dict[str, int]:
    """Serve `handler` for every GET on a free port of each host (runners are appended to
    `runners`, for the caller to clean up); returns each host's port."""
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handler)
    ports = {}
    for name in hosts:
        runner = web.AppRunner(app, access_log=None, **options)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, name, 0)
        await site.start()
        assert site._server is not None
        assert site._server.sockets
        ports[name] = site._server.sockets[0].getsockname()[1]
    return ports


class GraphSite:
    """`hosts` hosts of `pages` pages each. Page i links to page i+1 of its host (so every page
    is reachable from page 0) and to `links` random pages of any host, plus noise: fragments,
    duplicates, a mailto: and an off-scope host that must never be contacted."""

    def __init__(
        self, *, hosts: int = 4, pages: int = 75, links: int = 6, delay: float = 0.0, seed: int = 1
    ) -> None:
        self.hosts = [f"127.0.0.{i + 2}" for i in range(hosts)]
        self.pages = pages
        self.links = links
        self.delay = delay
        self.seed = seed
        self.ports: dict[str, int] = {}
        self.hits: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.peak_in_flight: Counter[str] = Counter()
        self.robots: dict[str, tuple[int, str]] = {}
        #: URLs that answer 500 for now.
        self.broken: set[str] = set()
        self.robots_hits: Counter[str] = Counter()
        #: Extra files served on every host: path -> (content type, body).
        self.files: dict[str, tuple[str, bytes]] = {}
        #: When each host's pages were requested (monotonic seconds).
        self.times: dict[str, list[float]] = {}
        #: Called with the number of page hits so far, after each page hit.
        self.on_hit: Callable[[int], None] | None = None
        self._runners: list[web.AppRunner] = []

    def url(self, host: int, page: int) -> str:
        name = self.hosts[host]
        return f"http://{name}:{self.ports[name]}/p/{page}"

    @property
    def start_urls(self) -> list[str]:
        return [self.url(h, 0) for h in range(len(self.hosts))]

    def all_urls(self) -> set[str]:
        return {self.url(h, p) for h in range(len(self.hosts)) for p in range(self.pages)}

    def _body(self, host: int, page: int) -> str:
        rnd = random.Random(self.seed * 1_000_003 + host * 10_007 + page)
        hrefs = []
        if page + 1 < self.pages:
            hrefs.append(f"/p/{page + 1}")
        for _ in range(self.links):
            h, p = rnd.randrange(len(self.hosts)), rnd.randrange(self.pages)
            hrefs.append(self.url(h, p) if h != host else f"../p/{p}#frag")
        hrefs += [hrefs[0], "mailto:someone@example.com", "http://offsite.invalid/x"]
        anchors = "".join(f'<a href="{href}">link</a>' for href in hrefs)
        return f"<html><head><title>h{host}-p{page}</title></head><body>{anchors}</body></html>"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        name = request.url.host or ""
        host = self.hosts.index(name)
        if request.path in self.files:
            self.hits[str(request.url)] += 1
            kind, body = self.files[request.path]
            return web.Response(body=body, content_type=kind)
        if request.path == "/robots.txt":
            self.robots_hits[name] += 1
            status, text = self.robots.get(name, (404, ""))
            return web.Response(status=status, text=text)
        if not request.path.startswith("/p/"):
            return web.Response(status=404)
        page = int(request.path.removeprefix("/p/"))
        self.hits[str(request.url)] += 1
        self.times.setdefault(name, []).append(time.monotonic())
        if str(request.url) in self.broken:
            return web.Response(status=500)
        self.in_flight[name] += 1
        self.peak_in_flight[name] = max(self.peak_in_flight[name], self.in_flight[name])
        try:
            if self.delay:
                await asyncio.sleep(self.delay)  # latency, so that requests overlap
            if self.on_hit is not None:
                self.on_hit(sum(self.hits.values()))
            return web.Response(text=self._body(host, page), content_type="text/html")
        finally:
            self.in_flight[name] -= 1

    async def start(self) -> None:
        self.ports = await serve(self._handle, self.hosts, self._runners)

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()


class FaultSite:
    """A hostile web on three hosts. `faults` serves, from its index page, links to pages that
    fail N times then succeed, throttle with Retry-After, stall, reset the connection, redirect
    in a loop, send a gzip bomb or an oversized body, binary or mis-encoded content; `broken`
    has `broken_pages` pages that all answer 500; `unreachable` has `unreachable_pages` pages
    and resets every connection. The server records every hit with its time."""

    FLAKY_FAILURES = 2
    RETRY_AFTER = 1

    def __init__(
        self, *, broken_pages: int = 10, unreachable_pages: int = 20, cap: int = 1_000_000
    ) -> None:
        self.faults, self.broken = "127.0.0.6", "127.0.0.7"
        self.unreachable = SilentHost("127.0.0.8")
        self.broken_pages = broken_pages
        self.unreachable_pages = unreachable_pages
        self.cap = cap
        self.ports: dict[str, int] = {}
        self.hits: dict[str, list[float]] = {}
        self._release = asyncio.Event()
        self._runners: list[web.AppRunner] = []
        self.bomb = gzip.compress(b"\0" * (100 * cap), compresslevel=9)

    def url(self, host: str, path: str) -> str:
        return f"http://{host}:{self.ports[host]}{path}"

    def count(self, host: str, path: str) -> int:
        return len(self.hits.get(self.url(host, path), []))

    def _index(self) -> str:
        paths = [
            "/flaky",
            "/throttle",
            "/stall",
            "/reset",
            "/loop",
            "/bomb",
            "/big",
            "/binary",
            "/misencoded",
            "/to-index",
            "/missing",
        ]
        links = [self.url(self.faults, p) for p in paths]
        links += [self.url(self.broken, f"/d/{n}") for n in range(self.broken_pages)]
        links += [self.unreachable.url(f"/u/{n}") for n in range(self.unreachable_pages)]
        return "".join(f'<a href="{u}">x</a>' for u in links)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        url = str(request.url)
        self.hits.setdefault(url, []).append(time.monotonic())
        hits = len(self.hits[url])
        path = request.path
        if request.url.host == self.broken:
            return web.Response(status=500, text="down")
        if path == "/":
            return web.Response(
                text=f"<html><body>{self._index()}</body></html>", content_type="text/html"
            )
        if path == "/flaky":
            if hits <= self.FLAKY_FAILURES:
                return web.Response(status=503)
            return web.Response(text="<p>finally</p>", content_type="text/html")
        if path == "/throttle":
            if hits == 1:
                return web.Response(status=429, headers={"Retry-After": str(self.RETRY_AFTER)})
            return web.Response(text="<p>ok</p>", content_type="text/html")
        if path == "/stall":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), 30)
            return web.Response(text="too late", content_type="text/html")
        if path == "/reset":
            sock = request.transport.get_extra_info("socket") if request.transport else None
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                request.transport.close()  # type: ignore[union-attr]
            return web.Response(text="never seen")
        if path in ("/loop", "/loop2"):
            raise web.HTTPFound("/loop2" if path == "/loop" else "/loop")
        if path == "/to-index":
            raise web.HTTPMovedPermanently("/")
        if path == "/bomb":
            return web.Response(
                body=self.bomb, headers={"Content-Encoding": "gzip", "Content-Type": "text/html"}
            )
        if path == "/big":
            response = web.StreamResponse(headers={"Content-Type": "text/html"})
            await response.prepare(request)
            for _ in range(2 * self.cap // 65536 + 2):
                await response.write(b"<p>" + b"x" * 65533)
            return response
        if path == "/binary":
            return web.Response(body=bytes(range(256)) * 64, content_type="image/png")
        if path == "/misencoded":
            body = (
                '<html><body>caf\xe9 \xff\xfe <a href="/flaky?from=misencoded">x</a></body></html>'
            ).encode("latin-1")
            return web.Response(body=body, headers={"Content-Type": "text/html; charset=utf-8"})
        return web.Response(status=404)

    async def start(self) -> None:
        await self.unreachable.start()
        hosts = (self.faults, self.broken)
        self.ports = await serve(self._handle, hosts, self._runners, shutdown_timeout=1)

    async def stop(self) -> None:
        self._release.set()
        for runner in self._runners:
            await runner.cleanup()
        await self.unreachable.stop()


class SilentHost:
    """A host that gives no HTTP answer: it accepts each connection, reads the request and
    resets the connection. `requests` counts them, `paths` lists what was asked."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = 0
        self.paths: list[str] = []
        self._server: asyncio.Server | None = None

    @property
    def requests(self) -> int:
        return len(self.paths)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    async def _reset(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            head = await reader.readuntil(b"\r\n\r\n")
            self.paths.append(head.split(b" ", 2)[1].decode())
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._reset, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class HealthSite:
    """Hosts of every kind of health, on loopback, for the host-health tests. The seed host's
    front page links to every page of the others chosen (`kinds`):

    - healthy: 200 pages that answer at once
    - flaky: 40 good pages, and among them 10 that answer 503 twice, then 200
    - mixed: 40 good pages, and among them bad ones of each kind: 2 that hang (time out), 2
      that reset the connection, 2 that redirect in a loop, 2 too large (TOO_LARGE bytes), 5
      that answer 500 forever
    - failing: 100 pages, all 500
    - hanging: 100 pages; every request hangs (robots.txt too) until the site stops
    - refused: 100 pages on an address where nothing listens
    - outage: 60 pages; after its first 10 pages it answers 503 (or, with outage="reset",
      resets connections) for `outage_for` seconds of `clock`, then recovers
    - storm: 50 pages; for its first 10 s of `clock` it answers 429 with Retry-After: 2

    `hits` counts requests per (kind, path); `times` keeps when (on `clock`) each answer of a
    kind was given."""

    KINDS = ("healthy", "flaky", "mixed", "failing", "hanging", "refused", "outage", "storm")
    TOO_LARGE = 50_000

    def __init__(
        self,
        kinds: Iterable[str],
        *,
        clock: Callable[[], float] = time.time,
        outage: str = "503",
        outage_for: float = 20.0,
    ) -> None:
        self.kinds = list(kinds)
        self.clock = clock
        self.outage, self.outage_for = outage, outage_for
        self.addresses = {kind: f"127.0.0.{50 + i}" for i, kind in enumerate(self.KINDS)}
        self.addresses["seed"] = "127.0.0.49"
        self.ports: dict[str, int] = {}
        self.hits: Counter[tuple[str, str]] = Counter()
        self.times: dict[str, list[float]] = {kind: [] for kind in self.KINDS}
        #: The failing host answers 200 from now on (a host repaired, for --retry-failed).
        self.repaired = False
        self._outage_at: float | None = None
        #: Requests the outage host got while its outage lasted.
        self.outage_hits = 0
        self._storm_from: float | None = None
        self._stop = asyncio.Event()
        self._runners: list[web.AppRunner] = []
        self._refused: socket.socket | None = None

    def url(self, kind: str, path: str) -> str:
        return f"http://{self.addresses[kind]}:{self.ports[kind]}{path}"

    def pages(self, kind: str) -> list[str]:
        """The paths of a kind's pages, in the order the seed links them."""
        if kind == "healthy":
            return [f"/p/{n}" for n in range(200)]
        if kind == "flaky":
            return _among([f"/p/{n}" for n in range(40)], [f"/flaky/{n}" for n in range(10)])
        if kind == "mixed":
            bad = [f"/{what}/{n}" for what in ("hang", "reset", "loop", "large") for n in range(2)]
            return _among([f"/p/{n}" for n in range(40)], bad + [f"/500/{n}" for n in range(5)])
        if kind == "outage":
            return [f"/p/{n}" for n in range(60)]
        if kind == "storm":
            return [f"/p/{n}" for n in range(50)]
        return [f"/p/{n}" for n in range(100)]

    def requests_to(self, kind: str) -> int:
        return sum(n for (k, _), n in self.hits.items() if k == kind)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        kind = next(k for k, a in self.addresses.items() if a == request.url.host)
        path = request.path
        self.hits[kind, path] += 1
        if kind == "seed":
            if path != "/":
                return web.Response(status=404)
            links = [self.url(k, p) for k in self.kinds for p in self.pages(k)]
            body = "".join(f'<a href="{u}">x</a>' for u in links)
            return web.Response(text=f"<html><body>{body}</body></html>", content_type="text/html")
        if kind == "hanging":
            await self._stop.wait()
            return web.Response(status=503)
        if path == "/robots.txt":
            return web.Response(status=404)
        status, headers = self._answer(kind, path, request)
        if status == 0:  # reset the connection, with no answer
            _reset(request)
            raise web.HTTPServiceUnavailable()
        self.times[kind].append(self.clock())
        if status in (301, 302):
            return web.Response(status=status, headers=headers)
        if status == 200 and path.startswith("/large/"):
            return web.Response(body=b"x" * self.TOO_LARGE, content_type="text/html")
        text = f"<html><title>{kind} {path}</title></html>"
        return web.Response(status=status, text=text, content_type="text/html", headers=headers)

    def _answer(self, kind: str, path: str, request: web.Request) -> tuple[int, dict[str, str]]:
        """The status (0: reset) and headers for a page."""
        now = self.clock()
        if kind == "flaky" and path.startswith("/flaky/"):
            return (503 if self.hits[kind, path] <= 2 else 200), {}
        if kind == "mixed":
            what = path.split("/")[1]
            if what == "reset":
                return 0, {}
            if what == "loop":  # /loop/0 -> /loop/0b -> /loop/0 ...
                twin = path[:-1] if path.endswith("b") else f"{path}b"
                return 302, {"Location": twin}
            if what == "500":
                return 500, {}
        if kind == "failing":
            return (200 if self.repaired else 500), {}
        if kind == "outage":
            done = len(self.times[kind])
            if self._outage_at is None and done >= 10:
                self._outage_at = now
            if self._outage_at is not None and now - self._outage_at < self.outage_for:
                self.outage_hits += 1
                return (0 if self.outage == "reset" else 503), {}
        if kind == "storm":
            if self._storm_from is None:
                self._storm_from = now
            if now - self._storm_from < 10:
                return 429, {"Retry-After": "2"}
        return 200, {}

    async def start(self) -> None:
        self._refused = socket.socket()
        self._refused.bind((self.addresses["refused"], 0))  # bound, never listening
        self.ports["refused"] = self._refused.getsockname()[1]
        served = [k for k in ("seed", *self.kinds) if k != "refused"]
        ports = await serve(self._route, [self.addresses[k] for k in served], self._runners)
        for kind in served:
            self.ports[kind] = ports[self.addresses[kind]]

    async def _route(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/hang/"):
            self.hits["mixed", request.path] += 1
            await self._stop.wait()
            return web.Response(status=503)
        return await self._handle(request)

    async def stop(self) -> None:
        self._stop.set()
        for runner in self._runners:
            await runner.cleanup()
        if self._refused is not None:
            self._refused.close()


def _among(good: list[str], bad: list[str]) -> list[str]:
    """`bad` spread evenly among `good`, as bad pages are on a real site."""
    every = max(len(good) // max(len(bad), 1), 1)
    mixed: list[str] = []
    for n, path in enumerate(good):
        mixed.append(path)
        if n % every == every - 1 and bad:
            mixed.append(bad.pop(0))
    return mixed + bad


def _reset(request: web.Request) -> None:
    """Close the request's connection with a TCP reset."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.close()


class ForwardProxy:
    """An HTTP proxy on `host`: absolute-form requests are forwarded (one per connection) and
    CONNECT opens a tunnel (https). `seen` lists (method, target, Proxy-Authorization). With
    `authorization`, a request without that Proxy-Authorization gets a 407."""

    def __init__(self, host: str = "127.0.0.30", authorization: str | None = None) -> None:
        self.host = host
        #: The Proxy-Authorization it wants (None: any): else it answers 407.
        self.authorization = authorization
        self.port = 0
        self.seen: list[tuple[str, str, str | None]] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            line, *lines = head.split("\r\n")
            method, target, _ = line.split(" ", 2)
            headers = {k.title(): v for k, v in (h.split(": ", 1) for h in lines if ": " in h)}
            self.seen.append((method, target, headers.get("Proxy-Authorization")))
            wanted = self.authorization
            if wanted is not None and headers.get("Proxy-Authorization") != wanted:
                writer.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="proxy"\r\n'
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
                await writer.drain()
                return
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                url = target.split("://", 1)[1]
                hostport, _, path = url.partition("/")
                host, _, port = hostport.partition(":")
                up_reader, up_writer = await asyncio.open_connection(host, int(port or 80))
                body = await reader.readexactly(int(headers.get("Content-Length", "0")))
                kept = {
                    k: v
                    for k, v in headers.items()
                    if not k.lower().startswith("proxy-") and k.lower() != "connection"
                }
                kept["Connection"] = "close"
                request = f"{method} /{path} HTTP/1.1\r\n"
                request += "".join(f"{k}: {v}\r\n" for k, v in kept.items()) + "\r\n"
                up_writer.write(request.encode("latin-1") + body)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


class Decoy:
    """A private host no crawl may reach: counts every connection made to it (any protocol),
    then closes it."""

    def __init__(self, host: str = "127.0.0.2") -> None:
        self.host = host
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def _count(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._count, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class ScriptSite:
    """A shop whose content exists only once its scripts have run. `/` builds its links to
    `items` item pages (and to /list and /scroll) in JavaScript; an item page's title and price
    are written by a script; `/list` loads its entries with fetch() from a JSON API that wants
    the cookies set by the server and by a script; `/scroll` shows 10 entries and loads 10 more
    each time it is scrolled to the bottom, `scroll` in all. Every page also tries to reach
    `decoy` (a private host) in every way a page can: fetch, an iframe, an image, a WebSocket,
    a redirect; its own script runs once those attempts are over and the page has loaded.
    `hits` counts requests by path; every page marks itself ready with `<div id="ready">`.
    """

    def __init__(self, decoy: Decoy, *, items: int = 20, scroll: int = 50) -> None:
        self.decoy = decoy
        self.items = items
        self.scroll = scroll
        self.hits: Counter[str] = Counter()
        self.port = 0
        #: Called with each request's path (tests wait on it).
        self.on_hit: Callable[[str], None] | None = None

    def _page(self, body: str, script: str) -> web.Response:
        decoy = f"http://{self.decoy.host}:{self.decoy.port}"
        html = f"""<!doctype html><html><head><title>shop</title></head><body>{body}
<iframe src="{decoy}/frame"></iframe><img src="{decoy}/pixel.png">
<script>
try {{ new WebSocket("ws://{self.decoy.host}:{self.decoy.port}/ws"); }} catch (e) {{}}
const loaded = new Promise(done => window.addEventListener("load", done));
Promise.allSettled([fetch("{decoy}/steal"), fetch("/bounce"), loaded]).then(() => {{
{script}
}});
</script></body></html>"""
        return web.Response(text=html, content_type="text/html")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] += 1
        if self.on_hit is not None:
            self.on_hit(path)
        ready = 'document.body.insertAdjacentHTML("beforeend", \'<div id="ready"></div>\');'
        if path == "/":
            response = self._page(
                '<div id="links"></div>',
                f"""const links = document.getElementById("links");
for (let i = 1; i <= {self.items}; i++) {{
  links.insertAdjacentHTML("beforeend", `<a href="/item/${{i}}">item ${{i}}</a>`);
}}
links.insertAdjacentHTML("beforeend", '<a href="/list">list</a><a href="/scroll">more</a>');
document.cookie = "seen=yes; path=/";
{ready}""",
            )
            response.set_cookie("visitor", "v1")
            return response
        if path.startswith("/item/"):
            n = path.rsplit("/", 1)[1]
            return self._page(
                "<h1></h1><span class=price></span>",
                f"""document.querySelector("h1").textContent = "Item " + {n};
document.querySelector(".price").textContent = ({n} * 1.5).toFixed(2);
{ready}""",
            )
        if path == "/list":
            return self._page(
                "<ul id=entries></ul>",
                f"""fetch("/api/entries").then(r => r.json()).then(entries => {{
  const ul = document.getElementById("entries");
  for (const e of entries) {{
    ul.insertAdjacentHTML("beforeend", `<li><a href="${{e.url}}">${{e.name}}</a></li>`);
  }}
  {ready}
}});""",
            )
        if path == "/api/entries":
            cookies = request.cookies
            if cookies.get("visitor") != "v1" or cookies.get("seen") != "yes":
                return web.json_response({"error": "no cookies"}, status=403)
            entries = [{"name": f"entry {i}", "url": f"/item/{i}"} for i in range(1, 6)]
            return web.json_response(entries)
        if path == "/scroll":
            return self._page(
                '<div id="feed" style="font-size: 40px"></div>',
                f"""let loaded = 0;
const feed = document.getElementById("feed");
function more() {{
  return fetch("/api/feed?offset=" + loaded).then(r => r.json()).then(rows => {{
    for (const row of rows) feed.insertAdjacentHTML("beforeend", `<p class="entry">${{row}}</p>`);
    loaded += rows.length;
    if (loaded >= {self.scroll}) feed.insertAdjacentHTML("afterend", '<div id="end"></div>');
  }});
}}
let busy = false;
window.addEventListener("scroll", () => {{
  if (busy || loaded >= {self.scroll}) return;
  if (window.innerHeight + window.scrollY >= document.body.scrollHeight - 10) {{
    busy = true; more().then(() => {{ busy = false; }});
  }}
}});
more().then(() => {{ {ready} }});""",
            )
        if path == "/api/feed":
            offset = int(request.query.get("offset", "0"))
            rows = [f"row {i}" for i in range(offset, min(offset + 10, self.scroll))]
            return web.json_response(rows)
        if path == "/bounce":
            raise web.HTTPFound(f"http://{self.decoy.host}:{self.decoy.port}/bounced")
        if path == "/hang":
            return self._page("<p>never ready</p>", "while (true) {}")
        raise web.HTTPNotFound()
