"""Keeps `make bench` working: the benchmark over a few days. No timing is asserted here."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from covid_pipeline_tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow


def test_benchmark_runs_every_variant_and_reports_ratios(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    command = [
        sys.executable, str(PROJECT_ROOT / "benchmarks" / "bench.py"),
        "--days", "3", "--latency-ms", "5", "--out", str(out),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    for name in ("naive", "core", "cli"):
        variant = report["results"][name]
        assert (variant["api_requests"], variant["objects"]) == (3, 3), name
        assert variant["max_requests_per_day"] == 1 and variant["peak_rss_mb"] > 0
    assert set(report["ratios"]) >= {"a_over_b", "a_over_c", "b_over_floor"}
    assert "(c) dagster asset materialize" in result.stdout
