"""The README's first command: the offline demo writes and lists a backfill."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_backfills_into_the_local_warehouse(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "WAREHOUSE_DIR")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "covid_pipeline.demo",
            "--start",
            "2021-01-14",
            "--end",
            "2021-01-16",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fetched 3/3 days (100%)" in result.stdout
    assert "3 of 3 days written" in result.stdout
    for day in ("2021-01-14", "2021-01-15", "2021-01-16"):
        assert (tmp_path / f"warehouse/covid_daily_reports/usa/date={day}/data.parquet").is_file()
    assert (tmp_path / ".dagster_home").is_dir()  # so that `make dev` shows the demo's run
