"""The benchmarks stay runnable: the comparison at a tiny size (ours and the yardstick)."""

import subprocess
import sys
from pathlib import Path

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
