"""`dg`, Dagster's CLI, as the README teaches it: check and list the definitions, launch a range.

Each command runs as a subprocess against the project (`--target-path`), from a scratch folder,
so that no `.env` of the developer's reaches it; `dg dev` itself runs under every UI test (the
`dagster_dev` fixture).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from covid_pipeline_replay.server import Fault, ReplayServer

from covid_pipeline.core.lake import stores
from covid_pipeline_tests.support.api import MOST_REQUESTS, THROTTLE_S, THROTTLED_DAYS
from covid_pipeline_tests.support.deployment import open_instance, project_dagster_home
from covid_pipeline_tests.support.lake import assert_days_match_replay
from covid_pipeline_tests.support.project import PROJECT_ROOT

pytestmark = pytest.mark.slow

DAILY, CATALOG = dg.AssetKey("covid_daily_reports"), dg.AssetKey("covid_catalog_table")


def dg_command(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run `dg` from this venv on the project; fail with its output. Returns the output."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("dg")), *args, "--target-path", str(PROJECT_ROOT)],
        env={**os.environ, "VIRTUAL_ENV": sys.prefix, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"dg {' '.join(args)} failed:\n{output[-6000:]}"
    assert "SupersessionWarning" not in output  # the commands Dagster recommends today
    return output


def test_dg_checks_and_lists_the_definitions(tmp_path: Path) -> None:
    assert "All definitions loaded successfully" in dg_command(["check", "defs"], {}, tmp_path)
    listed = json.loads(dg_command(["list", "defs", "--json"], {}, tmp_path))
    assert sorted(a["asset_key"] for a in listed["assets"]) == [
        CATALOG.path[0],
        "covid_country_daily",
        "covid_country_daily_summary",
        "covid_country_daily_table",
        DAILY.path[0],
    ]
    assert {"covid_lake_observer", "covid_follows_new_days"} <= {
        sensor["name"] for sensor in listed["sensors"]
    }


@pytest.mark.reliability(
    "API",
    f"`dg launch` of {len(THROTTLED_DAYS)} days against a rate limiter's {THROTTLE_S:g} s "
    "window answering `Retry-After: 0`",
    "every day lands and is recorded in the project's instance, catalog included; at most "
    f"{MOST_REQUESTS} requests",
)
def test_dg_launch_lands_a_throttled_range_in_the_projects_instance(
    replay: ReplayServer, tmp_path: Path
) -> None:
    home = project_dagster_home(tmp_path / "home")
    warehouse = tmp_path / "warehouse"
    env = {"DAGSTER_HOME": home, "API_URL": replay.url, "WAREHOUSE_DIR": str(warehouse)}
    replay.set_faults([Fault("throttle", seconds=THROTTLE_S, retry_after=0)])
    days = [str(day) for day in THROTTLED_DAYS]
    output = dg_command(
        ["launch", "--assets", "covid_daily_reports,covid_catalog_table",
         "--partition-range", f"{days[0]}...{days[-1]}"],
        env, tmp_path,
    )  # fmt: skip
    assert "throwaway" not in output
    stats = replay.stats()
    assert stats["faults_served"] > 0 and stats["requests"] <= MOST_REQUESTS, stats
    assert_days_match_replay(stores.LocalStore(warehouse), "covid_daily_reports/usa", days)
    with open_instance(home) as instance:  # the record is kept: the project's instance
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        records = instance.fetch_materializations(DAILY, limit=100).records
        assert sorted(record.partition_key for record in records) == days
        assert instance.get_latest_materialization_event(CATALOG) is not None


def test_dg_launch_without_dagster_home_says_so_before_fetching(
    replay: ReplayServer, tmp_path: Path
) -> None:
    env = {"API_URL": replay.url, "WAREHOUSE_DIR": str(tmp_path / "warehouse")}
    env_without_home = {key: value for key, value in os.environ.items() if key != "DAGSTER_HOME"}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("dg")), "launch", "--assets", "covid_daily_reports",
         "--partition", "2021-01-01", "--target-path", str(PROJECT_ROOT)],
        env={**env_without_home, "VIRTUAL_ENV": sys.prefix, **env},
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    warning = output.find("DAGSTER_HOME is not set, so this run is on a throwaway Dagster instance")
    assert 0 <= warning < output.find("fetching 1 days"), output[-4000:]
    assert "export DAGSTER_HOME=$PWD/.dagster_home" in output
    assert replay.stats()["requests"] == 1  # a warning, not a refusal: the day still lands
