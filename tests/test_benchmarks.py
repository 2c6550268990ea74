"""The benchmarks stay runnable: the comparison at a tiny size (ours and the yardstick)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the benchmarks, at a tiny size

ROOT = Path(__file__).parent.parent


def test_compare_runs_at_a_tiny_size() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "compare.py"),
            "--hosts",
            "2",
            "--pages",
            "5",
            "--only",
            "ours,minimal",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "| crawler (ours) | 10 |" in result.stdout
    assert "| minimal aiohttp+selectolax | 10 |" in result.stdout


def test_crawler_bench_crawls_its_whole_local_site() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "crawler", "bench", "--hosts", "2", "--pages", "10", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("crawled 20 pages (0 failed) from 2 local hosts in ")
    assert "20 items" in result.stdout


def test_crawler_bench_rejects_a_bad_size() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "crawler", "bench", "--pages", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: --hosts must be within")


def test_bench_pages_are_deterministic_and_link_across_hosts() -> None:
    from crawler.parser import extract_links, parse_html
    from crawler.tools.bench import bench_page

    hosts = ["127.0.0.2", "127.0.0.3"]
    page = bench_page(hosts, 8000, 0, 3, 50)
    assert page == bench_page(hosts, 8000, 0, 3, 50)
    assert 12_000 < len(page) < 16_000
    links = extract_links(parse_html(page.decode()), "http://127.0.0.2:8000/p/3.html")
    assert "http://127.0.0.2:8000/p/4.html" in links
    assert any(link.startswith("http://127.0.0.3:8000/p/") for link in links)


def test_ab_compares_two_revisions_at_a_tiny_size() -> None:
    # "." against itself: an sdist has no git history to check revisions out of
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "ab.py"),
            ".",
            ".",
            "--runs",
            "2",
            "--hosts",
            "2",
            "--pages",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert "| A . |" in result.stdout
    assert "| B . |" in result.stdout
    assert "B/A CPU per page: " in result.stdout
    assert result.stdout.count("  run ") == 4  # every run reported


def test_links_benchmark_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "links.py"), "--pages", "30"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "42 links" in result.stdout
    assert "us per link" in result.stdout


def test_the_broad_benchmark_gives_each_host_an_address_and_reads_its_pace(
    tmp_path: Path,
) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from broad import address, read_log

    hosts = [address(n) for n in range(10_000)]
    assert len(set(hosts)) == 10_000
    assert all(h.startswith("127.") and not h.endswith((".0", ".255")) for h in hosts)
    log = tmp_path / "access.log"
    log.write_text(
        "10.000 127.10.0.1 /robots.txt\n10.001 127.10.0.1 /p/0.html\n10.501 127.10.0.1 /p/1.html\n"
        "11.001 127.10.0.1 /p/2.html\n10.100 127.10.0.2 /robots.txt\n10.200 127.10.0.2 /p/0.html\n"
    )
    robots, pages, gap, pace = read_log(log)
    assert robots == {"127.10.0.1": 1, "127.10.0.2": 1}
    assert pages == {"127.10.0.1": 3, "127.10.0.2": 1}
    assert round(gap, 3) == 0.5
    assert round(pace, 3) == 2.0


@pytest.mark.skipif(
    not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists(), reason="nginx"
)
def test_the_broad_benchmark_runs_at_a_tiny_size() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "broad.py"), "--hosts", "20", "--pages", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "60 pages" in result.stdout
    assert "robots.txt per host: 1-1 (20 hosts); pages per host: 3-3" in result.stdout
