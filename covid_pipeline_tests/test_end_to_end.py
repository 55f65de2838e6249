"""The two ways people launch backfills, each end to end against real local servers.

- `dagster asset materialize --partition-range` over the whole history, to an S3 server.
- A backfill launched through the GraphQL mutation the UI sends, run by `dagster dev`'s daemon,
  with two countries in one lake (ISO_CODE=USA,CAN).
- A month for USA,CAN through the CLI, cataloged and queried together; then a switch of the
  country set under the same prefix, refused before anything is fetched.
"""

import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from covid_pipeline_replay import jhu
from covid_pipeline_replay.server import Fault, ReplayServer

from covid_pipeline.core.catalog import duckdb_catalog
from covid_pipeline.core.dates import FIRST_DAY, LAST_DAY, day_range
from covid_pipeline.core.lake import parquet
from covid_pipeline.core.schema.transform import SCHEMA
from covid_pipeline_tests.support.deployment import (
    ON_BOTH_INSTANCES,
    DagsterDev,
    DagsterHome,
    dagster_cli,
    project_dagster_home,
)
from covid_pipeline_tests.support.lake import replay_table
from covid_pipeline_tests.support.s3 import s3_keys

pytestmark = pytest.mark.slow

EMPTY_DAYS = ["2020-06-01", "2021-12-25", "2023-03-09"]


@ON_BOTH_INSTANCES
def test_cli_backfills_the_whole_history_to_s3_idempotently(
    replay: ReplayServer,
    s3_bucket: str,
    s3_endpoint: str,
    tmp_path: Path,
    dagster_home: DagsterHome,
) -> None:
    replay.set_faults([Fault(kind="empty", dates=EMPTY_DAYS)])
    env = {
        "API_URL": replay.url,
        "BUCKET_NAME": s3_bucket,
        "PREFIX": "covid/usa",
        "AWS_ENDPOINT_URL": s3_endpoint,
        **dagster_home.env,
        "FETCH_CONCURRENCY": "8",
    }
    args = [
        "asset", "materialize", "-m", "covid_pipeline.definitions",
        "--select", "covid_daily_reports",
        "--partition-range", f"{FIRST_DAY}...{LAST_DAY}",
    ]  # fmt: skip
    dagster_cli(args, env, cwd=tmp_path, timeout=600)

    days = [d for d in day_range(FIRST_DAY, LAST_DAY) if d.isoformat() not in EMPTY_DAYS]
    first_run = s3_keys(s3_bucket)
    assert sorted(first_run) == [f"covid/usa/date={d}/data.parquet" for d in days]
    assert replay.stats()["max_requests_per_day"] == 1

    s3 = boto3.client("s3")
    for day in days:
        body = s3.get_object(Bucket=s3_bucket, Key=f"covid/usa/date={day}/data.parquet")["Body"]
        table = pq.read_table(io.BytesIO(body.read()))
        assert table.schema.remove_metadata().equals(SCHEMA, check_metadata=True), day
        assert table.schema.metadata[b"covid_pipeline.countries"] == b"USA", day
        assert table.equals(replay_table(day)), day

    # Independent of the replay code: a late day equals the raw JHU time series cell.
    row = _time_series_row("time_series_covid19_confirmed_global.csv", "US")
    body = s3.get_object(Bucket=s3_bucket, Key="covid/usa/date=2022-06-01/data.parquet")["Body"]
    assert pq.read_table(io.BytesIO(body.read()))["confirmed"].to_pylist() == [
        int(row[(dt.date(2022, 6, 1) - FIRST_DAY).days])
    ]

    sizes = object_sizes(s3_bucket)
    dagster_cli(args, env, cwd=tmp_path, timeout=600)
    # Nothing duplicated: the same keys, each replaced by a file of the same size, the same
    # rows, and the new run's id in its writer stamp (the only bytes that change).
    assert object_sizes(s3_bucket) == sizes
    body = s3.get_object(Bucket=s3_bucket, Key="covid/usa/date=2021-01-15/data.parquet")["Body"]
    again = pq.read_table(io.BytesIO(body.read()))
    assert again.equals(replay_table("2021-01-15"))
    writer = parquet.stamp_of(again.schema.metadata, parquet.WRITER_KEY)
    assert writer is not None and writer.startswith("dagster run ")
    assert (
        s3_keys(s3_bucket)["covid/usa/date=2021-01-15/data.parquet"]
        != first_run["covid/usa/date=2021-01-15/data.parquet"]
    )  # written again, by the second run


def object_sizes(bucket: str) -> dict[str, int]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {item["Key"]: item["Size"] for page in pages for item in page.get("Contents", [])}


def _time_series_row(file_name: str, country: str) -> list[str]:
    path = Path(jhu.DATA_DIR) / "time_series" / file_name
    for line in path.read_text().splitlines():
        cells = line.split(",")
        if cells[0] == "" and cells[1] == country:
            return cells[4:]
    raise AssertionError(f"{country} not in {file_name}")


@pytest.fixture
def dagster_dev_env() -> dict[str, str]:
    return {"ISO_CODE": "USA,CAN"}  # two countries in one lake


# On production's instance: test_browser.py launches a UI backfill on the embedded one.
@pytest.mark.parametrize("dagster_home", ["postgres"], indirect=True)
def test_ui_backfill_runs_through_the_daemon(dagster_dev: DagsterDev, replay: ReplayServer) -> None:
    warehouse = dagster_dev.warehouse
    days = [d.isoformat() for d in day_range(dt.date(2021, 1, 1), dt.date(2021, 1, 7))]
    assert dagster_dev.wait_for_backfill(dagster_dev.launch_backfill(days)) == "COMPLETED_SUCCESS"

    for day in days:  # one file a day, with both countries' rows: USA's as for USA alone
        path = warehouse / "covid_daily_reports" / "can_usa" / f"date={day}" / "data.parquet"
        table = pq.read_table(path)
        assert set(table["iso"].to_pylist()) == {"CAN", "USA"}, day
        assert table.filter(pc.equal(table["iso"], "USA")).equals(replay_table(day)), day
    stats = replay.stats()  # one run: each (day, country) fetched once
    assert stats["requests"] == 2 * len(days) and stats["max_requests_per_day"] == 1


@pytest.mark.reliability(
    "Bad input",
    "`dagster asset materialize` with ISO_CODE=USA under a PREFIX that holds USA,CAN's days",
    "refused before any fetch, naming both sets and what to do; the files stay as they were",
)
def test_cli_backfills_two_countries_into_one_lake_and_refuses_a_switch(
    replay: ReplayServer, tmp_path: Path
) -> None:
    warehouse = tmp_path / "warehouse"
    env = {
        "API_URL": replay.url, "ISO_CODE": "USA,CAN", "PREFIX": "lake",
        "WAREHOUSE_DIR": str(warehouse), "DAGSTER_HOME": project_dagster_home(tmp_path / "home"),
    }  # fmt: skip
    args = [
        "asset", "materialize", "-m", "covid_pipeline.definitions",
        "--select", "covid_daily_reports,covid_catalog_table",
        "--partition-range", "2021-01-01...2021-01-31",
    ]  # fmt: skip
    dagster_cli(args, env, cwd=tmp_path, timeout=300)
    assert replay.stats()["requests"] == 2 * 31
    _, rows = duckdb_catalog.query(
        warehouse / "catalog.duckdb",
        "select iso, count(distinct date), sum(confirmed_diff) from covid_daily_reports_can_usa "
        "group by iso order by iso",
    )
    january = day_range(dt.date(2021, 1, 1), dt.date(2021, 1, 31))
    for iso, (got_iso, days, new_cases) in zip(("CAN", "USA"), rows, strict=True):
        expected = sum(r["confirmed_diff"] for d in january for r in jhu.reports(iso, d))
        assert (got_iso, days, new_cases) == (iso, 31, expected)

    before = sorted(p.name for p in (warehouse / "lake").iterdir())
    replay.reset()
    result = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), *args[:-1], "2021-02-01...2021-02-02"],
        env={**os.environ, **env, "ISO_CODE": "USA"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "holds files written for CAN,USA" in result.stdout + result.stderr
    assert replay.stats()["requests"] == 0
    assert sorted(p.name for p in (warehouse / "lake").iterdir()) == before
