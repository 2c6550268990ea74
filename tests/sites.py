"""Test sites: a generated link graph served by aiohttp on several 127.0.0.x hosts, in the test's
own event loop. The server counts what happened (hits per URL, peak in-flight per host)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable

from aiohttp import web


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
        if request.path == "/robots.txt":
            status, text = self.robots.get(name, (404, ""))
            return web.Response(status=status, text=text)
        if not request.path.startswith("/p/"):
            return web.Response(status=404)
        page = int(request.path.removeprefix("/p/"))
        self.hits[str(request.url)] += 1
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
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        for name in self.hosts:
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, name, 0)
            await site.start()
            self._runners.append(runner)
            server = site._server
            assert server is not None
            assert server.sockets
            self.ports[name] = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
