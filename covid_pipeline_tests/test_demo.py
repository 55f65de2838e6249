"""The README's first command: the offline demo backfills, catalogs once, and answers SQL."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from covid_pipeline_tests.support.deployment import open_instance

pytestmark = pytest.mark.slow


def test_demo_backfills_into_the_local_warehouse(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "WAREHOUSE_DIR")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "covid_pipeline_replay.demo",
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
    assert "3 of 3 days written and cataloged" in result.stdout
    for day in ("2021-01-14", "2021-01-15", "2021-01-16"):
        assert (tmp_path / f"warehouse/covid_daily_reports/usa/date={day}/data.parquet").is_file()
        assert (tmp_path / f"warehouse/covid_country_daily/usa/date={day}/data.parquet").is_file()
    # The question, answered from the country-day table: the three days, newest first.
    answer = result.stdout.split("$ covid-pipeline query")[1].splitlines()
    assert "from covid_country_daily_usa" in answer[0]
    assert [line.split()[:2] for line in answer[3:6]] == [
        ["2021-01-16", "USA"],
        ["2021-01-15", "USA"],
        ["2021-01-14", "USA"],
    ]

    # One CLI run selected every asset: the days landed, then the catalog ran exactly once.
    home = tmp_path / ".dagster_home"  # kept, so that `make dev` shows the demo's run
    with open_instance(home) as instance:
        daily = instance.fetch_materializations(dg.AssetKey("covid_daily_reports"), limit=10)
        catalog = instance.fetch_materializations(dg.AssetKey("covid_catalog_table"), limit=10)
        assert len(daily.records) == 3 and len(catalog.records) == 1
        assert max(r.timestamp for r in daily.records) <= catalog.records[0].timestamp
        summary = instance.fetch_materializations(
            dg.AssetKey("covid_country_daily_summary"), limit=10
        )
        assert len(summary.records) == 1
