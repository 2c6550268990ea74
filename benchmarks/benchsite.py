"""A static multi-host site for benchmarks: `hosts` hosts on 127.0.0.2..., ~14 KB pages with
~42 links each (a third to other hosts), every page reachable from each host's /p/0.html.
Served by nginx when it is installed, else by one standard-library server process per host."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

FILLER = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. "


def generate(root: Path, hosts: list[str], port: int, pages: int, seed: int = 1) -> None:
    """Write `pages` pages per host under root/<host>/p/<n>.html, plus a robots.txt."""
    rnd = random.Random(seed)
    for h, host in enumerate(hosts):
        folder = root / host / "p"
        folder.mkdir(parents=True)
        (root / host / "robots.txt").write_text("User-agent: *\nDisallow: /private/\n")
        for n in range(pages):
            links = [f"/p/{(n + 1) % pages}.html"]
            for _ in range(41):
                other = rnd.randrange(len(hosts))
                target = f"/p/{rnd.randrange(pages)}.html"
                links.append(target if other == h else f"http://{hosts[other]}:{port}{target}")
            anchors = "\n".join(f'<li><a href="{u}">link {i}</a></li>' for i, u in enumerate(links))
            body = "".join(f"<p>{FILLER * 8}</p>" for _ in range(18))
            (folder / f"{n}.html").write_text(
                f"<!DOCTYPE html><html><head><title>h{h} page {n}</title></head><body>"
                f"<h1>Page {n}</h1><ul>{anchors}</ul>{body}</body></html>"
            )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(hosts: int = 10, pages: int = 500) -> Iterator[tuple[list[str], str]]:
    """Serve the site; yields (start URLs, server name)."""
    names = [f"127.0.0.{i + 2}" for i in range(hosts)]
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root, names, port, pages)
        os.chmod(tmp, 0o755)
        nginx = shutil.which("nginx") or (
            "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
        )
        procs: list[subprocess.Popen[bytes]] = []
        if nginx:
            servers = "".join(
                f"server {{ listen {name}:{port}; root {root / name}; location / {{ }} }}\n"
                for name in names
            )
            conf = root / "nginx.conf"
            conf.write_text(
                f"worker_processes 1; daemon off; pid {root}/nginx.pid; error_log {root}/error.log;"
                f"{' user root;' if os.geteuid() == 0 else ''}\n"
                "events { worker_connections 4096; }\n"
                "http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;"
                " default_type text/html; types { text/html html; text/plain txt; }\n"
                f"{servers}}}\n"
            )
            procs.append(subprocess.Popen([nginx, "-c", str(conf)]))
            server = "nginx"
        else:
            for name in names:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "http.server",
                            str(port),
                            "--bind",
                            name,
                            "--directory",
                            str(root / name),
                            "--protocol",
                            "HTTP/1.1",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            server = "python http.server"
        try:
            for name in names:  # wait until every host answers
                for _ in range(200):
                    with contextlib.suppress(OSError), socket.create_connection((name, port), 0.1):
                        break
                    time.sleep(0.05)
            yield [f"http://{name}:{port}/p/0.html" for name in names], server
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
