"""How long `python -m crawler run` takes to send its first request: from a fresh start, and when
resuming a store with a large queue (default 1,000,000 URLs over 10 hosts).

    python benchmarks/startup.py [--queued 1000000] [--runs 5]

The clock starts when the process is spawned and stops when the local server (on 127.0.0.2-11)
receives the first request, robots.txt included. The queued store is built once, through the
store's own interface, then copied before every run so that each run resumes the same queue.
A first, unmeasured run compiles the bytecode, as installing the package does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from crawler.store import NewRequest, SQLiteStore  # noqa: E402
from crawler.urls import split_url  # noqa: E402

HOSTS = [f"127.0.0.{n}" for n in range(2, 12)]


class _FirstRequest(BaseHTTPRequestHandler):
    arrived: threading.Event
    at: list[float]

    def do_GET(self) -> None:
        if not self.at:
            self.at.append(time.monotonic())
            self.arrived.set()
        body = b"<html><title>t</title><body>ok</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serve() -> Iterator[tuple[int, type[_FirstRequest]]]:
    """One small server per host, all on one port; yields (port, handler class to reset)."""
    handler = type("Handler", (_FirstRequest,), {"arrived": threading.Event(), "at": []})
    servers: list[ThreadingHTTPServer] = []
    port = 0
    for host in HOSTS:
        server = ThreadingHTTPServer((host, port), handler)
        port = server.server_address[1]
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield port, handler
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


async def build(path: Path, port: int, queued: int) -> None:
    store = await SQLiteStore.open(path, "bench")
    try:
        batch: list[NewRequest] = []
        for n in range(queued):
            split = split_url(f"http://{HOSTS[n % len(HOSTS)]}:{port}/q/{n}.html")
            assert split is not None
            batch.append(NewRequest(url=split[0], host=split[1]))
            if len(batch) == 50_000:
                await store.add(batch)
                batch.clear()
        await store.add(batch)
    finally:
        await store.close()


def first_request(argv: list[str], handler: type[_FirstRequest]) -> float:
    handler.at.clear()
    handler.arrived.clear()
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if not handler.arrived.wait(60):
        proc.kill()
        raise SystemExit(f"no request within 60 s: {proc.stderr.read().decode()[-2000:]}")
    seconds = handler.at[0] - started
    proc.wait()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queued", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    spider = str(HERE / "bench_spider.py")
    base = [sys.executable, "-m", "crawler", "run", spider, "-q", "-s", "max_pages=5"]
    os.environ["PYTHONPATH"] = str(HERE.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")
    # as installed: bytecode compiled once (pip does it at install), not on every start
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    with serve() as (port, handler), tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # the same command both times, as a user resumes: the start URLs name the hosts
        base += ["-a", "start_urls=" + ",".join(f"http://{host}:{port}/" for host in HOSTS)]
        fresh = []
        warm_up = work / "warm-up.db"
        first_request([*base, "--store", str(warm_up)], handler)  # writes the bytecode
        for _ in range(args.runs):
            store = work / "fresh.db"
            fresh.append(first_request([*base, "--store", str(store), "--fresh"], handler))
        template = work / "queued.db"
        began = time.monotonic()
        asyncio.run(build(template, port, args.queued))
        built = time.monotonic() - began
        resumed = []
        for _ in range(args.runs):
            store = work / "resume.db"
            for suffix in ("", "-wal", "-shm"):
                if Path(f"{template}{suffix}").exists():
                    shutil.copy(f"{template}{suffix}", f"{store}{suffix}")
            os.sync()  # the copy's write-back must not run during the measurement
            resumed.append(first_request([*base, "--store", str(store)], handler))
    print("| start | runs | median s | min s | max s |\n|---|---|---|---|---|")
    for name, times in (("fresh", fresh), (f"resume, {args.queued:,} queued", resumed)):
        print(
            f"| {name} | {len(times)} | {statistics.median(times):.3f} | {min(times):.3f} "
            f"| {max(times):.3f} |"
        )
    print(f"\n(queued store built in {built:.1f} s)")


if __name__ == "__main__":
    main()
