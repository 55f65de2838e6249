"""The daily asset end to end in-process: replay API -> S3 server, through the IO manager."""

import datetime as dt
import sys
import time
from collections.abc import Iterator

import boto3
import dagster as dg
import pytest
from covid_pipeline_replay import jhu
from covid_pipeline_replay.server import Fault, ReplayServer

from covid_pipeline.core.config import load_settings
from covid_pipeline.core.lake import day_files, parquet, stores
from covid_pipeline.core.schema.transform import to_table
from covid_pipeline.definitions import build_definitions
from covid_pipeline_tests.support.deployment import failure_message, materialize_days
from covid_pipeline_tests.support.project import free_port
from covid_pipeline_tests.support.s3 import s3_keys

KEY = dg.AssetKey("covid_daily_reports")


@pytest.fixture
def defs(
    replay: ReplayServer, s3_bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> dg.Definitions:
    # The S3-only endpoint variable, as for a MinIO or Ceph server beside real AWS services.
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    settings = load_settings(
        {
            "API_URL": replay.url,
            "BUCKET_NAME": s3_bucket,
            "PREFIX": "lake/covid",
            "HTTP_BACKOFF": "0",
        }
    )
    return build_definitions(settings)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def materialize(
    defs: dg.Definitions, instance: dg.DagsterInstance, first: str, last: str | None = None
) -> dg.ExecuteInProcessResult:
    return materialize_days(defs, first, last, instance=instance)


def test_asset_writes_the_exact_s3_key_and_round_trips(defs, instance, s3_bucket: str) -> None:
    result = materialize(defs, instance, "2021-01-15")
    assert result.success
    key = "lake/covid/date=2021-01-15/data.parquet"
    assert list(s3_keys(s3_bucket)) == [key]
    back = day_files.read_day(
        stores.S3Store(s3_bucket, boto3.client("s3")), "lake/covid", "2021-01-15"
    )
    day = dt.date(2021, 1, 15)
    assert back.equals(to_table(day, jhu.reports("USA", day)))
    [event] = result.asset_materializations_for_node("covid_daily_reports")
    assert event.metadata["dagster/uri"].value == f"s3://{s3_bucket}/{key}"


def test_asset_backfills_a_range_in_one_run_with_per_day_metadata(
    defs, instance, replay: ReplayServer, s3_bucket: str
) -> None:
    replay.set_faults([Fault(kind="empty", dates=["2021-01-12"])])
    result = materialize(defs, instance, "2021-01-10", "2021-01-14")
    assert result.success
    assert sorted(s3_keys(s3_bucket)) == [
        f"lake/covid/date=2021-01-{day}/data.parquet" for day in ("10", "11", "13", "14")
    ]
    events = {
        e.partition: e.metadata
        for e in result.asset_materializations_for_node("covid_daily_reports")
    }
    assert sorted(events) == [f"2021-01-1{d}" for d in range(5)]
    assert events["2021-01-12"]["skipped"].value is True
    assert events["2021-01-12"]["dagster/row_count"].value == 0
    assert events["2021-01-13"]["skipped"].value is False
    assert events["2021-01-13"]["dagster/row_count"].value == 56
    assert events["2021-01-13"]["dagster/uri"].value.endswith("date=2021-01-13/data.parquet")
    assert replay.stats()["max_requests_per_day"] == 1


@pytest.mark.reliability(
    "API",
    "Dagster: a required field missing on two days of a five-day run",
    "the run fails naming both days and causes, not retried; the other three are written "
    "and materialized; the re-run completes",
)
def test_asset_failure_lists_every_failed_day_and_writes_the_others(
    defs, instance, replay: ReplayServer, s3_bucket: str
) -> None:
    replay.set_faults(
        [Fault(kind="drop_field", field="deaths", dates=["2021-01-11", "2021-01-13"])]
    )
    result = materialize(defs, instance, "2021-01-10", "2021-01-14")
    message = failure_message(result)
    assert message.startswith(f"2 of 5 days failed (API: {replay.url}):\n")
    assert (
        "  2021-01-11, 2021-01-13: record 0 (Alabama): missing required field 'deaths'" in message
    )
    assert "The other 3 of 5 days were written" in message and "Re-run the same range" in message
    good = ["2021-01-10", "2021-01-12", "2021-01-14"]
    assert sorted(s3_keys(s3_bucket)) == [f"lake/covid/date={d}/data.parquet" for d in good]
    # The UI shows exactly the written days as materialized, each with its file.
    events = {
        e.partition: e.metadata
        for e in result.asset_materializations_for_node("covid_daily_reports")
    }
    assert sorted(events) == good
    assert events["2021-01-12"]["dagster/uri"].value == (
        f"s3://{s3_bucket}/lake/covid/date=2021-01-12/data.parquet"
    )
    # A schema problem will not pass on a retry, so the step was not retried.
    assert replay.stats()["requests"] == 5

    replay.set_faults([])  # the cause is fixed: the same range completes
    assert materialize(defs, instance, "2021-01-10", "2021-01-14").success
    assert len(s3_keys(s3_bucket)) == 5


@pytest.mark.reliability(
    "API",
    "Dagster: the API refuses every connection (a one-day run, the default retry settings)",
    "the run fails in seconds, not retried, with the project's message first: 1 of 1 days, "
    "'could not connect to <API_URL>', 'No day was written', and what to do",
)
def test_asset_reports_an_api_that_is_down_within_seconds(
    instance, s3_bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    down = f"http://127.0.0.1:{free_port()}/api"
    defs = build_definitions(load_settings({"API_URL": down, "BUCKET_NAME": s3_bucket}))
    started = time.monotonic()
    result = materialize(defs, instance, "2020-08-01")
    took = time.monotonic() - started
    sys.stderr.write(f"API down: the one-day run failed after {took:.1f}s\n")
    message = failure_message(result)
    assert message.startswith(f"1 of 1 days failed (API: {down}):\n  2020-08-01: could not")
    assert f"could not connect to {down}: it refused every connection" in message
    assert "No day was written." in message and "Re-run the same range" in message
    kinds = [event.event_type_value for event in result.all_events]
    assert kinds.count("STEP_START") == 1 and "STEP_UP_FOR_RETRY" not in kinds
    assert s3_keys(s3_bucket) == {}


@pytest.mark.reliability(
    "Storage",
    "Dagster: ISO_CODE=USA,CAN under a PREFIX that holds USA's files",
    "refused before any fetch, not retried, naming both sets and what to do; the files stay",
)
def test_asset_refuses_a_prefix_that_holds_another_country_set(
    instance, replay: ReplayServer, s3_bucket: str, s3_endpoint: str
) -> None:
    def defs_for(iso_code: str) -> dg.Definitions:
        env = {"API_URL": replay.url, "BUCKET_NAME": s3_bucket, "PREFIX": "lake/covid"}
        return build_definitions(load_settings(env | {"ISO_CODE": iso_code}))

    assert materialize(defs_for("USA"), instance, "2021-01-10", "2021-01-11").success
    before = s3_keys(s3_bucket)
    replay.reset()
    message = failure_message(materialize(defs_for("USA,CAN"), instance, "2021-01-12"))
    assert message.startswith(f"s3://{s3_bucket}/lake/covid holds files written for USA")
    assert "this run is for CAN,USA" in message and "Set PREFIX to a folder" in message
    assert replay.stats()["requests"] == 0 and s3_keys(s3_bucket) == before


def test_asset_writes_every_country_of_a_list_into_one_file_a_day(
    instance, replay: ReplayServer, s3_bucket: str, s3_endpoint: str
) -> None:
    env = {"API_URL": replay.url, "BUCKET_NAME": s3_bucket, "ISO_CODE": "usa,can"}
    result = materialize(
        build_definitions(load_settings(env)), instance, "2021-01-14", "2021-01-15"
    )
    assert result.success
    assert sorted(s3_keys(s3_bucket)) == [
        f"covid_daily_reports/can_usa/date=2021-01-{day}/data.parquet" for day in (14, 15)
    ]
    store = stores.S3Store(s3_bucket, boto3.client("s3"))
    table = day_files.read_day(store, "covid_daily_reports/can_usa", "2021-01-15")
    assert set(table["iso"].to_pylist()) == {"CAN", "USA"} and parquet.countries_of(table) == (
        "CAN,USA"
    )
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["names_present"] is True
    assert replay.stats()["requests"] == 4  # one per (day, country)
