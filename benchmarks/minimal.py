"""The yardstick: a minimal asyncio crawler (aiohttp + selectolax), no persistence, no robots,
no politeness beyond a per-host semaphore. What one Python process can do here.

    python benchmarks/minimal.py URL [URL...]
"""

from __future__ import annotations

import asyncio
import sys
from urllib.parse import urljoin, urlsplit

import aiohttp
from selectolax.lexbor import LexborHTMLParser


async def main(starts: list[str], concurrency: int = 32, per_host: int = 16) -> None:
    hosts = {urlsplit(u).netloc for u in starts}
    seen = set(starts)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for url in starts:
        queue.put_nowait(url)
    slots: dict[str, asyncio.Semaphore] = {}
    items = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:

        async def worker() -> None:
            nonlocal items
            while True:
                url = await queue.get()
                host = urlsplit(url).netloc
                slot = slots.setdefault(host, asyncio.Semaphore(per_host))
                try:
                    async with slot, s.get(url) as response:
                        body = await response.read()
                    tree = LexborHTMLParser(body)
                    title = tree.css_first("title")
                    items += bool(title)
                    for node in tree.css("a[href]"):
                        link = urljoin(url, node.attributes["href"] or "").split("#")[0]
                        if link not in seen and urlsplit(link).netloc in hosts:
                            seen.add(link)
                            queue.put_nowait(link)
                finally:
                    queue.task_done()

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        await queue.join()
        for task in workers:
            task.cancel()
    print(f"pages={len(seen)} items={items}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
