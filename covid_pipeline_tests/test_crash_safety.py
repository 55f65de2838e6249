"""Crash safety: a backfill killed with SIGKILL leaves only whole files; a re-run completes it.

After the re-run there is exactly one readable file per day, and nothing else.
The backfills run in their own processes (the core range backfill, and the `dagster` CLI),
and are killed once some days have landed, while others are being written.
"""

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import dagster as dg
import pytest
from covid_pipeline_replay.server import ReplayServer

from covid_pipeline.core.dates import day_range
from covid_pipeline.core.lake import layout, stores
from covid_pipeline_tests.support.deployment import dagster_cli, open_instance, project_dagster_home
from covid_pipeline_tests.support.lake import assert_days_match_replay

FIRST, LAST = dt.date(2020, 12, 1), dt.date(2021, 2, 28)
DAYS = [str(day) for day in day_range(FIRST, LAST)]
PREFIX = "usa"

CORE_BACKFILL = """
import datetime as dt, os, pathlib, sys, boto3
from covid_pipeline.core import config
from covid_pipeline.core.lake import stores
from covid_pipeline.core.engine.run import RangeOptions, run_range
from covid_pipeline.core.dates import day_range
url, target, staging = sys.argv[1:]
store = (stores.S3Store(target[5:], boto3.client("s3")) if target.startswith("s3://")
         else stores.LocalStore(target))
run_range(config.api_client(config.settings_with({"api_url": url})), store, "usa",
    day_range(dt.date(2020, 12, 1), dt.date(2021, 2, 28)), RangeOptions(4, 4),
    staging_dir=pathlib.Path(staging))
"""


def kill_when(process: subprocess.Popen, landed: Callable[[], int], at_least: int) -> int:
    """SIGKILL the process's whole group once `landed()` reaches `at_least`; return landed()."""
    deadline = time.monotonic() + 120
    while landed() < at_least:
        assert process.poll() is None, "the backfill ended before it could be killed"
        assert time.monotonic() < deadline, "nothing landed in 2 minutes"
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    return landed()


def local_files(root: Path) -> list[str]:
    """Every file under the warehouse, hidden ones included, relative to it."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


@pytest.mark.reliability(
    "Crash",
    "SIGKILL in the middle of the core range backfill (local warehouse, and S3 on moto)",
    "only whole files remain; the re-run completes: one readable file per day, no leftovers",
)
@pytest.mark.parametrize("target", ["local", "s3"])
def test_crash_core_backfill_killed_midway_then_rerun(
    target: str, replay: ReplayServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    replay.latency_s = 0.02  # slow enough to be killed halfway through three months
    if target == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        store: stores.Store = stores.S3Store(bucket, boto3.client("s3"))
        where = f"s3://{bucket}"
    else:
        where = str(tmp_path / "warehouse")
        store = stores.LocalStore(where)
    staging = tmp_path / "staging"
    staging.mkdir()
    command = [sys.executable, "-c", CORE_BACKFILL, replay.url, where, str(staging)]

    process = subprocess.Popen(command, start_new_session=True, stderr=subprocess.DEVNULL)
    landed = kill_when(process, lambda: len(list(store.days(PREFIX))), at_least=10)
    assert landed < len(DAYS)  # killed in the middle, not after the end
    assert_days_match_replay(store, PREFIX, store.days(PREFIX))  # what landed is whole

    subprocess.run(command, check=True, stderr=subprocess.DEVNULL)  # the re-run
    assert list(store.days(PREFIX)) == DAYS
    assert_days_match_replay(store, PREFIX, DAYS)
    if target == "local":  # nothing but one data.parquet per day: no temporary file left
        expected = [f"usa/date={day}/data.parquet" for day in DAYS]
        assert local_files(tmp_path / "warehouse") == expected
    else:
        keys = [
            item["Key"] for item in boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]
        ]
        assert sorted(keys) == [layout.partition_key(PREFIX, day) for day in DAYS]


@pytest.mark.slow
@pytest.mark.reliability(
    "Crash",
    "SIGKILL of `dagster asset materialize --partition-range` while it writes",
    "only whole files remain; the killed run still holds the API pool's slot until "
    "`dagster run delete -f RUN_ID` frees it (docs/running.md); the re-run then completes: "
    "one readable file per day, no leftovers",
)
def test_crash_cli_killed_while_writing_then_rerun(replay: ReplayServer, tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    env = {
        "API_URL": replay.url,
        "WAREHOUSE_DIR": str(warehouse),
        "PREFIX": PREFIX,
        "WRITE_CONCURRENCY": "1",  # one file at a time: slow enough to be killed mid-way
        "DAGSTER_HOME": project_dagster_home(tmp_path / "home"),
    }
    args = [
        str(Path(sys.executable).with_name("dagster")), "asset", "materialize",
        "-m", "covid_pipeline.definitions", "--select", "covid_daily_reports",
        "--partition-range", f"{FIRST}...{LAST}",
    ]  # fmt: skip
    process = subprocess.Popen(
        args,
        env={**os.environ, **env},
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    store = stores.LocalStore(warehouse)
    landed = kill_when(process, lambda: len(list(store.days(PREFIX))), at_least=3)
    assert landed < len(DAYS)
    assert_days_match_replay(store, PREFIX, store.days(PREFIX))

    # Nothing could tell Dagster the process died: its run stays STARTED, holding the
    # covid_api pool's one slot, which the re-run would wait for. The documented remedy:
    with open_instance(env["DAGSTER_HOME"]) as instance:
        (killed,) = instance.get_runs()
        assert killed.status == dg.DagsterRunStatus.STARTED
    dagster_cli(["run", "delete", "-f", killed.run_id], env, cwd=tmp_path, timeout=120)
    dagster_cli(args[1:], env, cwd=tmp_path, timeout=300)
    assert list(store.days(PREFIX)) == DAYS
    assert_days_match_replay(store, PREFIX, DAYS)
    assert local_files(warehouse) == [f"usa/date={day}/data.parquet" for day in DAYS]
