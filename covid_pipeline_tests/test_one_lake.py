"""One lake, one truth: Dagster sees every day in the lake, whoever wrote it.

Against `dagster dev` (webserver and daemon, the project's instance file) on moto's S3 and
Glue, with the replay API. The lake sensor ticks every 5 s here (LAKE_SENSOR_INTERVAL):
- days written by a direct Lambda invocation show as materialized within two ticks, with the
  writer and a run's per-day metadata, without a request to the API; the catalog follows; an
  HTML page saved at another day's key does not stop the sensor: the tick's log and that day's
  page name it;
- a UI backfill whose run worker is killed with SIGKILL ends failed, every day it wrote shows
  as materialized, and a backfill of the missing days fetches only the rest.
"""

import datetime as dt
import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import dagster as dg
import pytest
from covid_pipeline_replay.server import ReplayServer

from covid_pipeline.core.dates import day_range
from covid_pipeline_tests.support.deployment import LOCATION, ON_BOTH_INSTANCES, DagsterDev
from covid_pipeline_tests.support.fakes import FakeContext
from covid_pipeline_tests.support.s3 import days_under

pytestmark = pytest.mark.slow

PREFIX = "covid_daily_reports/usa"
SENSOR_INTERVAL_S = 5
DAILY = dg.AssetKey("covid_daily_reports")
COUNTRY_DAILY = dg.AssetKey("covid_country_daily")

PARTITION_STATUS = """
{ assetNodeOrError(assetKey: {path: ["covid_daily_reports"]}) {
    ... on AssetNode { assetPartitionStatuses {
      ... on TimePartitionStatuses { ranges { status startKey endKey } } } } } }"""
TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { ticks(limit: 100) {
      timestamp status logEvents { events { level message } } } } }
  }
}"""


@pytest.fixture
def dagster_dev_env(s3_bucket: str) -> dict[str, str]:
    return {
        "BUCKET_NAME": s3_bucket,
        "CATALOG_MODE": "glue_partitions",
        "LAKE_SENSOR_INTERVAL": str(SENSOR_INTERVAL_S),
    }


@pytest.fixture
def lambda_handler(
    s3_bucket: str, replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModuleType]:
    """The Lambda handler, cold-started to write into the deployment's bucket and prefix."""
    for name, value in {
        "BUCKET_NAME": s3_bucket,
        "API_URL": replay.url,
        "ISO_CODE": "USA",
        "CATALOG_MODE": "glue_partitions",
    }.items():
        monkeypatch.setenv(name, value)
    import covid_pipeline.lambda_handler as module

    yield importlib.reload(module)


def partition_statuses(dev: DagsterDev) -> dict[str, str]:
    """Day -> its status in the UI's partition bar (MATERIALIZED, FAILED, ...); missing: absent."""
    node = dev.query(PARTITION_STATUS)["assetNodeOrError"]
    statuses = {}
    for status_range in node["assetPartitionStatuses"]["ranges"]:
        first = dt.date.fromisoformat(status_range["startKey"])
        last = dt.date.fromisoformat(status_range["endKey"])
        statuses |= {day.isoformat(): status_range["status"] for day in day_range(first, last)}
    return statuses


def runs_of_the_raw_days(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """The runs that fetch raw days (the automation's catalog and reporting runs aside)."""
    return [run for run in instance.get_runs() if DAILY in (run.asset_selection or ())]


def wait_until(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def sensor_ticks(dev: DagsterDev) -> list[dict[str, Any]]:
    """The lake sensor's ticks (timestamp, status, logEvents), oldest first."""
    assert dev.location_names() == [LOCATION]
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": "__repository__",
        "sensorName": "covid_lake_observer",
    }
    answer = dev.query(TICKS, {"selector": selector})["sensorOrError"]
    assert answer["__typename"] == "Sensor", answer
    return sorted(answer["sensorState"]["ticks"], key=lambda tick: tick["timestamp"])


@ON_BOTH_INSTANCES
def test_lake_sensor_records_what_a_direct_lambda_invocation_wrote(
    dagster_dev: DagsterDev, lambda_handler: ModuleType, replay: ReplayServer, s3_bucket: str
) -> None:
    days = [day.isoformat() for day in day_range(dt.date(2021, 2, 1), dt.date(2021, 2, 10))]
    stray = f"{PREFIX}/date=2021-01-20/data.parquet"  # a CDN's error page, saved as the file
    boto3.client("s3").put_object(Bucket=s3_bucket, Key=stray, Body=b"<html>502</html>")
    answer = lambda_handler.handler({"start_date": days[0], "end_date": days[-1]}, FakeContext())
    written_at = time.time()
    assert answer["written"] == days and answer["catalog"]["mode"] == "glue_partitions"
    replay.reset()

    instance = dagster_dev.instance()
    wait_until(
        lambda: all(partition_statuses(dagster_dev).get(day) == "MATERIALIZED" for day in days),
        timeout_s=120,
        what="the Lambda's days materialized in Dagster",
    )
    records = instance.fetch_materializations(DAILY, limit=100).records
    assert sorted(record.partition_key for record in records) == days  # each once, runless
    recorded_at = max(record.timestamp for record in records)
    ticks = sensor_ticks(dagster_dev)
    assert 1 <= len([t for t in ticks if written_at < t["timestamp"] <= recorded_at]) <= 2, ticks
    assert {tick["status"] for tick in ticks} <= {"SUCCESS", "SKIPPED"}, ticks
    (observed,) = instance.fetch_observations(DAILY, limit=10).records  # the stray, once
    assert observed.partition_key == "2021-01-20"
    assert "re-run that day" in (observed.asset_observation.description or "")
    assert partition_statuses(dagster_dev).get("2021-01-20") is None
    warnings = [
        event["message"] for tick in ticks for event in tick["logEvents"]["events"]
        if event["level"] == "WARNING"
    ]  # fmt: skip
    assert any(f"s3://{s3_bucket}/{stray} is not a day" in text for text in warnings), warnings
    for record in records:  # a run's per-day metadata, and who wrote the file
        metadata = record.asset_materialization.metadata
        file = answer["files"][record.partition_key]
        assert record.run_id == "" and metadata["dagster/row_count"].value == file["rows"]
        assert (
            metadata["dagster/uri"].value
            == f"s3://{s3_bucket}/{PREFIX}/date={record.partition_key}/data.parquet"
        )
        assert metadata["writer"].value == (
            "lambda covid-daily-reports-backfill request c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
        )
        assert metadata["size_kib"].value == round(file["bytes"] / 1024, 1)
    assert replay.stats()["requests"] == 0  # the sensor read the lake, never the API

    # The catalog follows these days as it follows a backfill's.
    catalog = dg.AssetKey("covid_catalog_table")
    wait_until(
        lambda: (
            (event := instance.get_latest_materialization_event(catalog)) is not None
            and event.timestamp > recorded_at
        ),
        timeout_s=150,
        what="the catalog asset materialized after the sensor's days",
    )
    # And the country days they feed (D..D+7) are recomputed, each once, from the lake.
    fed = [day.isoformat() for day in day_range(dt.date(2021, 2, 1), dt.date(2021, 2, 17))]

    def country_days() -> list[str]:
        records = instance.fetch_materializations(COUNTRY_DAILY, limit=100).records
        return sorted(str(record.partition_key) for record in records)

    wait_until(lambda: country_days() == fed, timeout_s=150, what="the country days followed")
    assert days_under(s3_bucket, "covid_country_daily/usa") == days  # the rest: no raw day
    assert replay.stats()["requests"] == 0


def run_worker_pids(home: Path) -> set[int]:
    """The processes that execute the Dagster runs of the deployment whose DAGSTER_HOME is `home`.

    Under `dagster dev` a run executes in a process the code server spawns; Dagster's log
    capture watches it with `watch_orphans.py <its pid>`. Tests in other pytest workers run
    deployments of their own at the same time: a run is ours if its DAGSTER_HOME is.
    """
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().decode().split("\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError):
            continue
        watcher = [i for i, arg in enumerate(command) if arg.endswith("watch_orphans.py")]
        if watcher and len(command) > watcher[0] + 1:
            pid = int(command[watcher[0] + 1])
            if _dagster_home_of(pid) == str(home):
                pids.add(pid)
    return pids


def _dagster_home_of(pid: int) -> str | None:
    try:
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None  # ended meanwhile
    for variable in environment:
        if variable.startswith(b"DAGSTER_HOME="):
            return variable.split(b"=", 1)[1].decode()
    return None


def test_killed_ui_backfill_shows_the_days_it_wrote_then_backfill_missing_fetches_the_rest(
    dagster_dev: DagsterDev, replay: ReplayServer, s3_bucket: str
) -> None:
    days = [day.isoformat() for day in day_range(dt.date(2021, 3, 1), dt.date(2021, 6, 30))]
    replay.latency_s = 0.3  # 122 days, 4 at a time: long enough to be killed midway
    instance = dagster_dev.instance()

    def landed() -> list[str]:
        return days_under(s3_bucket, PREFIX)

    backfill = dagster_dev.launch_backfill(days)
    wait_until(lambda: len(landed()) >= 12, timeout_s=180, what="12 days landed")
    (pid,) = run_worker_pids(dagster_dev.home.path)
    os.kill(pid, signal.SIGKILL)  # as the OOM killer does
    assert dagster_dev.wait_for_backfill(backfill) == "COMPLETED_FAILED"
    (run,) = runs_of_the_raw_days(instance)  # the automation's followers aside
    assert run.status == dg.DagsterRunStatus.FAILURE
    written = landed()
    assert 12 <= len(written) < len(days)

    wait_until(
        lambda: all(partition_statuses(dagster_dev).get(day) == "MATERIALIZED" for day in written),
        timeout_s=60,
        what="the killed run's days materialized",
    )
    statuses = partition_statuses(dagster_dev)
    missing = [day for day in days if statuses.get(day) != "MATERIALIZED"]
    assert missing == [day for day in days if day not in written]
    records = instance.fetch_materializations(DAILY, limit=1000).records
    assert {r.asset_materialization.metadata["writer"].value for r in records} == {
        f"dagster run {run.run_id}"
    }

    replay.reset()
    replay.latency_s = 0.0
    assert dagster_dev.wait_for_backfill(dagster_dev.launch_backfill(missing)) == (
        "COMPLETED_SUCCESS"
    )
    stats = replay.stats()  # only the rest, each once
    assert stats["requests"] == stats["distinct_days"] == len(missing)
    assert landed() == days


POOL = """
{ instance { concurrencyLimit(concurrencyKey: "covid_api") {
    limit usingDefaultLimit activeRunIds pendingStepRunIds } } }"""


def test_every_run_of_a_deployment_shares_the_apis_budget(
    dagster_dev: DagsterDev, replay: ReplayServer, s3_bucket: str, tmp_path: Path
) -> None:
    """Six separate ranges from the UI (six runs) and a CLI range, at once: one budget."""
    replay.latency_s = 0.2
    ranges = [day_range(dt.date(2020, 3, 1) + dt.timedelta(days=60 * i), dt.date(2020, 3, 1)
              + dt.timedelta(days=60 * i + 49)) for i in range(6)]  # fmt: skip
    ui_days = [day.isoformat() for days in ranges for day in days]
    cli_days = [day.isoformat() for day in day_range(dt.date(2021, 6, 1), dt.date(2021, 6, 30))]
    instance = dagster_dev.instance()

    # The CLI first: once its step holds the pool's one slot, the UI's runs wait for it.
    cli = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster")), "asset", "materialize",
         "-m", "covid_pipeline.definitions", "--select", "covid_daily_reports",
         "--partition-range", f"{cli_days[0]}...{cli_days[-1]}"],
        env={**os.environ, **dagster_dev.home.env, "API_URL": replay.url,
             "BUCKET_NAME": s3_bucket, "FETCH_CONCURRENCY": "4"},
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip

    def pool() -> dict:  # type: ignore[type-arg]
        return dagster_dev.query(POOL)["instance"]["concurrencyLimit"]

    wait_until(lambda: pool()["activeRunIds"], timeout_s=120, what="the CLI's step holds the slot")
    (cli_run,) = pool()["activeRunIds"]
    assert pool()["limit"] == 1 and pool()["usingDefaultLimit"]  # from the instance file
    backfill = dagster_dev.launch_backfill(ui_days)

    # While the CLI fetches, the UI's runs are held: none starts, and the pool says who holds it.
    while cli.poll() is None:
        assert pool()["activeRunIds"] in ([cli_run], []), pool()
        time.sleep(0.5)
    output = cli.stdout.read() if cli.stdout else ""
    assert cli.returncode == 0, output[-4000:]
    assert dagster_dev.wait_for_backfill(backfill, timeout_s=600) == "COMPLETED_SUCCESS"

    runs = runs_of_the_raw_days(instance)
    assert len(runs) == 7 and {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}
    stats = replay.stats()  # every day fetched once, never more than 4 requests at once
    assert stats["requests"] == stats["distinct_days"] == len(ui_days) + len(cli_days)
    assert stats["max_in_flight"] == 4, stats  # each run uses the whole budget, one at a time
    written = days_under(s3_bucket, PREFIX)
    assert written == sorted(ui_days + cli_days)
