"""The fetch backends on the benchmark site served over TLS (issue 30's throughput target).

    python benchmarks/backends.py [--runs 3] [--hosts 10] [--pages 500] [-- crawl args]

The benchmark site (benchsite.py: ~14 KB pages, 42 links each, 10 hosts on 127.0.0.2...) is
served by nginx over TLS with HTTP/2 offered by ALPN (a certificate for the hosts' addresses
from a throwaway CA, trusted through `-s ca_bundle`); links between hosts are https. Each run
crawls it with `-s fetch_backend=default|http2|impersonate` in turn (the order rotates from run
to run, so a machine growing busier favours none), a fresh store each time. Reported per
backend: median pages/s and CPU ms per page (the whole process, startup included), the range
over the runs, and the median against the default backend.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import trustme

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchsite import crawl_argv, find_nginx, free_port, generate, measure  # noqa: E402

from crawler.tools.bench import loopback_hosts  # noqa: E402

BACKENDS = ("default", "http2", "impersonate")


@contextlib.contextmanager
def tls_site(hosts: int, pages: int) -> Iterator[tuple[list[str], Path]]:
    """nginx serving the benchmark site over TLS (h2 and http/1.1); yields the start URLs and
    the CA's certificate file."""
    nginx = find_nginx()
    if nginx is None:
        raise SystemExit("nginx is needed: apt-get install nginx-light")
    names = loopback_hosts(hosts)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)
        generate(root, names, port, pages)
        for page in root.glob("*/p/*.html"):  # links between hosts over https
            page.write_bytes(page.read_bytes().replace(b'href="http://', b'href="https://'))
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(root / "ca.pem"))
        cert = ca.issue_cert(*names)
        cert.private_key_pem.write_to_path(str(root / "key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
        servers = "".join(
            f"server {{ listen {name}:{port} ssl http2; root {root / name}; location / {{ }} }}\n"
            for name in names
        )
        conf = root / "nginx.conf"
        conf.write_text(
            f"worker_processes 1; pid {root}/nginx.pid; error_log {root}/error.log;"
            f"{' user root;' if os.geteuid() == 0 else ''}\n"
            "events { worker_connections 4096; }\n"
            "http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;"
            " default_type text/html; types { text/html html; }"
            f" ssl_certificate {root}/cert.pem; ssl_certificate_key {root}/key.pem;\n"
            f"{servers}}}\n"
        )
        # nginx daemonizes once it listens: started when this returns
        subprocess.run([nginx, "-c", str(conf)], check=True)
        try:
            yield [f"https://{name}:{port}/p/0.html" for name in names], root / "ca.pem"
        finally:
            os.kill(int((root / "nginx.pid").read_text()), signal.SIGQUIT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("extra", nargs="*", help="after --: arguments for crawler run")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {b: [] for b in BACKENDS}
    cpus: dict[str, list[float]] = {b: [] for b in BACKENDS}
    with tls_site(args.hosts, args.pages) as (starts, ca), tempfile.TemporaryDirectory() as tmp:
        total = len(starts) * args.pages
        for run in range(args.runs):
            order = BACKENDS[run % 3 :] + BACKENDS[: run % 3]
            for backend in order:
                store = Path(tmp) / f"{backend}-{run}.db"
                extra = ["-s", f"fetch_backend={backend}", "-s", f"ca_bundle={ca}", *args.extra]
                done = measure(crawl_argv(starts, store, extra))
                if done.code != 0 or "0 failed" not in done.stderr:
                    raise SystemExit(f"{backend}: the crawl failed:\n{done.stderr[-3000:]}")
                rates[backend].append(total / done.seconds)
                cpus[backend].append(done.cpu / total * 1000)
                print(
                    f"run {run + 1} {backend}: {total / done.seconds:,.0f} pages/s,"
                    f" {done.cpu / total * 1000:.3f} CPU ms/page",
                    flush=True,
                )
    base = statistics.median(rates["default"])
    print(
        f"\n{len(starts)} hosts x {args.pages} pages over TLS (nginx, h2 by ALPN), {args.runs} runs"
    )
    print("| backend | pages/s median (range) | CPU ms/page median | vs default |")
    print("|---|---|---|---|")
    for backend in BACKENDS:
        r = rates[backend]
        print(
            f"| {backend} | {statistics.median(r):,.0f} ({min(r):,.0f}-{max(r):,.0f}) |"
            f" {statistics.median(cpus[backend]):.3f} | {statistics.median(r) / base:.2f}x |"
        )


if __name__ == "__main__":
    main()
