"""Proxies: the crawl's rotated per host and rested when they fail, a request's own, the
environment's; https through CONNECT. At a local proxy and a local site."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from crawler import ConfigError, Crawler, Settings
from crawler.net.proxies import ProxyPool, from_environment, split_credentials
from crawler.records import Summary
from crawler.store import open_readonly
from crawler.tools.report import summary_dict
from tests.helpers import ManualClock
from tests.sites import ForwardProxy, GraphSite
from tests.test_cli import SPIDER, acli
from tests.test_e2e import spider_for


def test_the_pool_rotates_per_host_and_rests_failing_proxies() -> None:
    clock = ManualClock(1000.0)
    pool = ProxyPool(["http://p1:1", "http://p2:1", "http://p3:1"], threshold=2, clock=clock)
    assert [pool.choose("a.com", "http://a.com/") for _ in range(4)] == [
        "http://p1:1",
        "http://p2:1",
        "http://p3:1",
        "http://p1:1",
    ]
    assert pool.choose("b.com", "http://b.com/") == "http://p1:1"  # each host rotates alone
    pool.done("http://p2:1", "refused")
    pool.done("http://p2:1", "refused")  # twice in a row: rested
    assert pool.resting() == ["http://p2:1"]
    assert {pool.choose("a.com", "http://a.com/") for _ in range(4)} == {
        "http://p1:1",
        "http://p3:1",
    }
    clock.t += 30  # its rest is over: tried again, and a failure rests it twice as long
    assert "http://p2:1" in {pool.choose("a.com", "http://a.com/") for _ in range(3)}
    pool.done("http://p2:1", "refused")
    clock.t += 31
    assert pool.resting() == ["http://p2:1"]
    for proxy in ("http://p1:1", "http://p3:1"):
        pool.done(proxy, "refused")
        pool.done(proxy, "refused")
    assert pool.choose("a.com", "http://a.com/") == "http://p2:1"  # all rest: back soonest


def test_credentials_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    bare, authorization = split_credentials("http://user:p%40ss@proxy.local:3128")
    assert bare == "http://proxy.local:3128"
    assert authorization == "Basic " + base64.b64encode(b"user:p@ss").decode()
    assert split_credentials("http://proxy.local:3128") == ("http://proxy.local:3128", None)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "proxy.local:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    assert from_environment("http://a.com/") == "http://proxy.local:3128"
    assert from_environment("https://a.com/") is None  # no HTTPS_PROXY
    assert from_environment("http://internal.example/x") is None
    assert ProxyPool().choose("a.com", "http://a.com/") == "http://proxy.local:3128"
    assert ProxyPool(["http://mine:1"]).choose("a.com", "http://a.com/") == "http://mine:1"
    with pytest.raises(ConfigError, match="proxy URLs"):
        Settings(proxies=("socks5://p:1080",))


async def test_a_crawl_goes_through_its_proxy(
    graph: GraphSite, proxy: ForwardProxy, store_path: Path
) -> None:
    with_credentials = proxy.url.replace("http://", "http://crawler:s3cret@")
    settings = Settings(concurrency=8, obey_robots=True, proxies=(with_credentials,))
    stats = await Crawler(spider_for(graph), settings, store_path=store_path).run()
    assert stats.pages == len(graph.all_urls())
    pages = {target for method, target, _ in proxy.seen if "/p/" in target}
    assert pages == graph.all_urls()  # every page went through the proxy
    assert any(target.endswith("/robots.txt") for _, target, _ in proxy.seen)  # robots.txt too
    expected = "Basic " + base64.b64encode(b"crawler:s3cret").decode()
    assert {auth for *_, auth in proxy.seen} == {expected}


async def test_the_environment_proxy_is_used_when_the_crawl_names_none(
    graph: GraphSite, proxy: ForwardProxy, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", graph.hosts[1])  # this host is reached directly
    settings = Settings(concurrency=8, obey_robots=False)
    await Crawler(spider_for(graph), settings, store_path=store_path).run()
    proxied_hosts = {target.split("/")[2].split(":")[0] for _, target, _ in proxy.seen}
    assert proxied_hosts == set(graph.hosts) - {graph.hosts[1]}
    assert os.environ["HTTP_PROXY"] == proxy.url


async def test_a_dead_proxy_is_rested_reported_and_the_crawl_goes_on(
    graph: GraphSite,
    proxy: ForwardProxy,
    store_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = "http://user:pw@127.0.0.31:9"  # nothing listens there
    settings = Settings(
        concurrency=8, obey_robots=False, proxies=(dead, proxy.url), retry_backoff=0.01
    )
    crawler = Crawler(spider_for(graph), settings, store_path=store_path)
    stats = await crawler.run()
    assert stats.failed_total == 0
    assert stats.pages == len(graph.all_urls())
    assert sum(1 for _, t, _ in proxy.seen if "/p/" in t) >= len(graph.all_urls())
    # the dead proxy is named (without its password) in the log, in stats and the live view
    (rested,) = [r.getMessage() for r in caplog.records if "resting it" in r.getMessage()]
    assert rested.startswith("proxy http://127.0.0.31:9 failing (3 of 3 requests; last: ")
    assert "pw" not in rested
    summary = summary_dict(await _summary(store_path), running=False, now=0)
    dead_counts = summary["proxies"]["http://127.0.0.31:9"]
    assert dead_counts["failed"] == dead_counts["requests"] >= 3
    assert summary["proxies"][proxy.url]["failed"] == 0
    assert summary["proxies"][proxy.url]["requests"] >= len(graph.all_urls())
    assert summary["errors"] == {}  # the pages themselves did not fail
    assert crawler._parts.proxy_pool is not None
    status = {p.proxy: p for p in crawler._parts.proxy_pool.status()}
    assert status["http://127.0.0.31:9"].failed >= 3
    assert status["http://127.0.0.31:9"].last_error


async def _summary(store_path: Path) -> Summary:
    store = await open_readonly(str(store_path), None)
    try:
        return await store.summary()
    finally:
        await store.close()


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_wrong_proxy_password_is_the_proxys_failure_not_the_sites(
    graph: GraphSite,
    https_site: tuple[str, Path],
    store_path: Path,
    scheme: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wanted = "Basic " + base64.b64encode(b"crawler:right").decode()
    strict = ForwardProxy(authorization=wanted)
    await strict.start()
    try:
        wrong = strict.url.replace("http://", "http://crawler:wrong@")
        settings = Settings(obey_robots=False, proxies=(wrong,), max_retries=1)
        spider = spider_for(graph)
        if scheme == "https":
            start, ca_file = https_site
            monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
            spider.start_urls = [start]
        stats = await Crawler(spider, settings, store_path=store_path).run()
    finally:
        await strict.stop()
    assert (stats.done_total, stats.failed_total) == (0, len(spider.start_urls))
    summary = summary_dict(await _summary(store_path), running=False, now=0)
    assert set(summary["errors"]) == {"proxy"}  # not the site's "http_status"
    assert 407 not in summary["statuses"]
    assert summary["proxies"][strict.url]["failed"] >= 1


async def test_https_goes_through_connect(
    https_site: tuple[str, Path], proxy: ForwardProxy, tmp_path: Path
) -> None:
    start, ca_file = https_site
    (tmp_path / "graph.py").write_text(SPIDER)
    env = {**os.environ, "SSL_CERT_FILE": str(ca_file)}
    args = ["-a", f"start_urls={start}", "-s", f"proxies={proxy.url}", "-o", "items.jsonl", "-q"]
    process = await acli("run", "graph.py", *args, cwd=tmp_path, env=env)
    _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    port = start.split(":")[2].strip("/")
    assert ("CONNECT", f"localhost:{port}", None) in proxy.seen  # a tunnel, not plain text
    assert not any(method == "GET" for method, *_ in proxy.seen)
    assert len((tmp_path / "items.jsonl").read_text().splitlines()) == 2
