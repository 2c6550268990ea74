"""Fetch backends: "default" (aiohttp, HTTP/1.1), "http2" (httpx + h2) and "impersonate"
(curl-cffi as Chrome), chosen per crawl, per host and per request; each against a real nginx
over TLS (HTTP/2 by ALPN) with a private CA, as users run them."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crawler import ConfigError, Crawler, Request, Response, Settings, Spider
from crawler.net.decoding import decoder_for
from crawler.tools.report import stats_text, summary_dict
from tests.helpers import TlsNginx, crawl, has_nginx, html
from tests.sites import ForwardProxy, GraphSite
from tests.test_cli import SPIDER, acli
from tests.test_e2e import spider_for
from tests.test_proxies import _summary

needs_nginx = pytest.mark.skipif(not has_nginx(), reason="nginx (apt-get install nginx-light)")
BACKENDS = ("default", "http2", "impersonate")


@pytest.fixture
def tls_site(tmp_path: Path) -> Iterator[TlsNginx]:
    root = tmp_path / "nginx"
    root.mkdir()
    with TlsNginx(root) as site:
        yield site


class Pages(Spider):
    name = "pages"

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        yield {"url": response.url, "title": response.css_first("title").text()}
        for url in response.links():
            yield Request(url)


async def crawl_site(site: TlsNginx, tmp_path: Path, **settings: Any) -> Any:
    spider = Pages()
    spider.start_urls = [site.start]
    options = {"ca_bundle": str(site.ca_file), "max_retries": 0, **settings}
    crawler = Crawler(spider, Settings().merge(options), store_path=tmp_path / "crawl.db")
    return await crawler.run()


@needs_nginx
@pytest.mark.parametrize("backend", BACKENDS)
async def test_each_backend_crawls_the_tls_site_over_its_protocol(
    tls_site: TlsNginx, tmp_path: Path, backend: str
) -> None:
    stats = await crawl_site(tls_site, tmp_path, fetch_backend=backend)
    assert (stats.pages, stats.failed) == (TlsNginx.PAGES, 0)
    logged = tls_site.requests()
    assert sorted(r["uri"] for r in logged) == sorted(
        ["/robots.txt", *(f"/{n}.html" for n in range(TlsNginx.PAGES))]
    )
    protocols = {r["protocol"] for r in logged}
    assert protocols == ({"HTTP/1.1"} if backend == "default" else {"HTTP/2.0"})
    # the start page's cookie, kept in the crawl's jar, goes with every later page
    later = [r for r in logged if r["uri"] not in ("/robots.txt", "/0.html")]
    assert {r["cookie"] for r in later} == {"sid=s3cret"}
    # gzip bodies (nginx's gzip on) decoded by the fetcher, whichever backend brought them
    assert "br" in logged[0]["encoding"]
    if backend == "impersonate":  # a browser's headers: its User-Agent, zstd
        assert all("Chrome/" in r["agent"] for r in logged)
        assert all("zstd" in r["encoding"] for r in logged)
    else:
        assert all(r["agent"].startswith("crawler/") for r in logged)


def _offered(ciphers: str) -> list[str]:
    """nginx's $ssl_ciphers without GREASE values (0x?a?a, random per connection)."""
    return [c for c in ciphers.split(":") if not re.fullmatch(r"0x[0-9a-f]a[0-9a-f]a", c)]


@needs_nginx
@pytest.mark.skipif(not shutil.which("chromium"), reason="chromium (apt-get install chromium)")
async def test_impersonate_offers_chromiums_cipher_suites_in_its_order(
    tls_site: TlsNginx, tmp_path: Path
) -> None:
    visit = await asyncio.to_thread(
        subprocess.run,
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--ignore-certificate-errors",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            tls_site.start,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "page 0" in visit.stdout, visit.stderr[-2000:]
    chromium = tls_site.requests()
    assert chromium
    browser = _offered(chromium[0]["ciphers"])

    await crawl_site(tls_site, tmp_path / "a", fetch_backend="impersonate")
    impersonated = tls_site.requests()[len(chromium) :]
    await crawl_site(tls_site, tmp_path / "b", fetch_backend="default")
    default = tls_site.requests()[len(chromium) + len(impersonated) :]

    assert impersonated
    assert default
    assert {tuple(_offered(r["ciphers"])) for r in impersonated} == {tuple(browser)}
    assert all("Chrome/" in r["agent"] for r in impersonated)
    assert _offered(default[0]["ciphers"]) != browser


@needs_nginx
@pytest.mark.parametrize("backend", BACKENDS)
async def test_every_backend_trusts_ssl_cert_file_and_only_it(
    tls_site: TlsNginx, tmp_path: Path, backend: str
) -> None:
    (tmp_path / "graph.py").write_text(SPIDER)
    args = ["run", "graph.py", "-a", f"start_urls={tls_site.start}", "-q"]
    args += ["-s", "max_retries=0", "-s", f"fetch_backend={backend}"]
    env = {**os.environ, "SSL_CERT_FILE": str(tls_site.ca_file)}
    proc = await acli(*args, "--store", "t.db", "-o", "items.jsonl", cwd=tmp_path, env=env)
    _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    items = (tmp_path / "items.jsonl").read_text().splitlines()
    assert len(items) == TlsNginx.PAGES

    # the system's CAs do not vouch for the server: the start page fails on its certificate
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    proc = await acli(*args, "--store", "u.db", cwd=tmp_path, env=env)
    _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    assert "1 failed" in stderr.decode()
    assert "certificate" in stderr.decode().lower()


@needs_nginx
async def test_ca_bundle_is_trusted_without_ssl_cert_file(
    tls_site: TlsNginx, tmp_path: Path
) -> None:
    for backend in BACKENDS:
        stats = await crawl_site(tls_site, tmp_path / backend, fetch_backend=backend)
        assert (backend, stats.pages) == (backend, TlsNginx.PAGES)


class Chooser(Spider):
    name = "chooser"
    start_urls = ["http://a.test/", "http://www.b.test/", "http://c.test/"]
    host_settings = {
        "*.b.test": {"fetch_backend": "impersonate"},
        "c.test": {"fetch_backend": "http2"},
    }

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        if response.url == "http://a.test/":
            yield Request("http://a.test/own", fetch_backend="http2")
            yield Request("http://c.test/own", fetch_backend="default")
        yield {"url": response.url}


async def test_a_requests_backend_then_its_hosts_then_the_crawls(store_path: Path) -> None:
    chosen: dict[str, str] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        chosen[str(request.url)] = request.extensions.get("fetch_backend", "default")
        return html("ok")

    stats = await crawl(Chooser(), handler, store_path, fetch_backend="default", obey_robots=True)
    assert stats.pages == 5
    assert chosen == {  # robots.txt with its host's backend
        "http://a.test/robots.txt": "default",
        "http://www.b.test/robots.txt": "impersonate",
        "http://c.test/robots.txt": "http2",
        "http://a.test/": "default",
        "http://a.test/own": "http2",
        "http://www.b.test/": "impersonate",
        "http://c.test/": "http2",
        "http://c.test/own": "default",
    }


async def test_the_crawls_backend_and_counts_per_backend(store_path: Path) -> None:
    chosen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        chosen.append(request.extensions.get("fetch_backend", "default"))
        return html("ok")

    stats = await crawl(Chooser(), handler, store_path, fetch_backend="http2")
    assert stats.pages == 5
    assert chosen.count("http2") == 3  # a.test/, a.test/own, c.test/
    counters = (await _summary(store_path)).counters
    assert {k: v for k, v in counters.items() if k.startswith("backend:")} == {
        "backend:requests:http2": 3,
        "backend:requests:impersonate": 1,
    }
    summary = await _summary(store_path)
    assert summary_dict(summary, running=False, now=0)["backends"] == {
        "http2": {"requests": 3, "failed": 0},
        "impersonate": {"requests": 1, "failed": 0},
    }
    assert (
        "fetch backends: http2 3 requests, 0 failed  impersonate 1 requests, 0 failed"
        in stats_text(summary, running=False, now=0)
    )


async def test_a_request_keeps_its_backend_across_a_resume(store_path: Path) -> None:
    from crawler.page.stored import _spec

    spec = _spec(Request("http://a.test/", fetch_backend="impersonate"))
    assert spec is not None
    assert json.loads(spec) == {"fetch_backend": "impersonate"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fetch_backend": "curl"}, "'fetch_backend' must be one of default, http2, impersonate"),
        ({"ca_bundle": "/no/such/ca.pem"}, "'ca_bundle': no file"),
        ({"impersonate_profile": " "}, "'impersonate_profile' must name a browser"),
    ],
)
def test_bad_backend_settings_are_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings().merge(options)


def test_a_bad_request_or_host_backend_is_an_error() -> None:
    with pytest.raises(ValueError, match="fetch_backend must be one of"):
        Request("http://a.test/", fetch_backend="h3")
    from crawler.settings import HostOverrides

    with pytest.raises(ConfigError, match="'fetch_backend' must be one of"):
        HostOverrides({"a.test": {"fetch_backend": "h3"}}, where="spider 's'")


async def test_an_unknown_profile_or_unreadable_bundle_fails_before_the_crawl(
    tmp_path: Path,
) -> None:
    spider = Pages()
    spider.start_urls = ["http://a.test/"]
    with pytest.raises(ConfigError, match="cannot pass for 'netscape4'"):
        await Crawler(
            spider,
            Settings(fetch_backend="impersonate", impersonate_profile="netscape4"),
            store_path=tmp_path / "a.db",
        ).run()
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="cannot load"):
        await Crawler(spider, Settings(ca_bundle=str(bad)), store_path=tmp_path / "b.db").run()


def test_zstd_bodies_are_decoded_within_the_cap() -> None:
    zstd = pytest.importorskip("backports.zstd")
    body = b"<p>zstd</p>" * 100_000
    packed = zstd.compress(body) + zstd.compress(b"<p>end</p>")  # two frames
    decoder = decoder_for("zstd")
    out = b"".join(
        decoder.decode(packed[i : i + 500], 10_000_000) for i in range(0, len(packed), 500)
    )
    assert out == body + b"<p>end</p>"
    assert len(decoder_for("zstd").decode(packed, 5_000)) == 5_001  # cut at the cap, + 1


@pytest.mark.parametrize("backend", ["http2", "impersonate"])
async def test_curl_backends_go_through_the_crawls_proxy(
    graph: GraphSite, proxy: ForwardProxy, store_path: Path, backend: str
) -> None:
    with_credentials = proxy.url.replace("http://", "http://crawler:s3cret@")
    settings = Settings(concurrency=8, proxies=(with_credentials,), fetch_backend=backend)
    stats = await Crawler(spider_for(graph), settings, store_path=store_path).run()
    assert stats.pages == len(graph.all_urls())
    assert {target for _, target, _ in proxy.seen if "/p/" in target} == graph.all_urls()
    expected = "Basic " + base64.b64encode(b"crawler:s3cret").decode()
    assert {auth for *_, auth in proxy.seen} == {expected}


@needs_nginx
@pytest.mark.parametrize("backend", ["http2", "impersonate"])
async def test_curl_backends_tunnel_https_through_connect(
    tls_site: TlsNginx, proxy: ForwardProxy, tmp_path: Path, backend: str
) -> None:
    stats = await crawl_site(tls_site, tmp_path, fetch_backend=backend, proxies=(proxy.url,))
    assert (stats.pages, stats.failed) == (TlsNginx.PAGES, 0)
    assert ("CONNECT", f"localhost:{tls_site.port}", None) in proxy.seen
    assert not any(method == "GET" for method, *_ in proxy.seen)
    assert {r["protocol"] for r in tls_site.requests()} == {"HTTP/2.0"}  # h2 in the tunnel


@needs_nginx
@pytest.mark.parametrize("backend", ["http2", "impersonate"])
async def test_curl_backends_answer_from_the_http_cache_and_keep_the_size_cap(
    tls_site: TlsNginx, tmp_path: Path, backend: str
) -> None:
    cache = {"http_cache": True, "http_cache_dir": str(tmp_path / "cache")}
    first = await crawl_site(tls_site, tmp_path / "1", fetch_backend=backend, **cache)
    sent = len(tls_site.requests())
    again = await crawl_site(tls_site, tmp_path / "2", fetch_backend=backend, **cache)
    assert first.pages == again.pages == TlsNginx.PAGES
    assert len(tls_site.requests()) == sent  # the second crawl asked nginx nothing

    # a (gzip) body decoded past max_response_size fails the page, whatever brought it
    capped = await crawl_site(
        tls_site, tmp_path / "3", fetch_backend=backend, max_response_size=500
    )
    assert (capped.pages, capped.failed) == (1, 1)


async def test_the_address_a_connection_reached_is_judged_by_the_guards_rule() -> None:
    from crawler.net.addresses import AddressGuard

    async def resolve(host: str) -> list[str]:
        return ["127.0.0.1"]

    guard = AddressGuard(resolve=resolve, trusted_hosts=["localhost"])
    await guard.check("localhost", "https://localhost/")  # named by the author: a local site
    assert guard.may_connect("localhost", "127.0.0.1")
    assert not guard.may_connect("elsewhere.test", "127.0.0.1")
    assert guard.may_connect("elsewhere.test", "93.184.215.14")
    assert not guard.may_connect("elsewhere.test", "")  # curl reached nothing it could name
