"""The opt-in fan-out: the range in chunks, each run by the packaged function, in parallel.

Each chunk goes through dagster_aws.pipes.PipesLambdaClient and reports back via Pipes.

The Lambda service cannot run here. LocalLambdaClient implements the Invoke contract that
PipesLambdaClient relies on (Payload, LogResult, FunctionError) by running the built zip under
the real runtime client, one process per container, so warm containers are reused as in AWS.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from covid_pipeline.core.config import load_settings
from covid_pipeline.definitions import build_definitions
from covid_pipeline.fanout import LambdaFanoutResource
from covid_pipeline.replay.server import Fault, ReplayServer
from covid_pipeline_tests.conftest import failure_message, materialize_days, s3_keys
from covid_pipeline_tests.lambda_runtime import (
    LambdaRuntime,
    LocalLambdaClient,
    function_environment,
    python312,
)

pytestmark = pytest.mark.slow

HANDLER = "covid_pipeline.lambda_handler.handler"
_CLIENT: dict[str, LocalLambdaClient] = {}


class LocalFanout(LambdaFanoutResource):
    """The fan-out resource with the local Lambda client in place of boto3's."""

    def lambda_client(self) -> Any:
        return _CLIENT["client"]


@pytest.fixture
def containers(
    function_root: Path, replay: ReplayServer, s3_bucket: str, aws: str
) -> Iterator[LocalLambdaClient]:
    env = function_environment(function_root, replay.url, s3_bucket, "fanout/usa", aws)
    runtimes = [LambdaRuntime(python312(), function_root, HANDLER, env) for _ in range(2)]
    _CLIENT["client"] = LocalLambdaClient(runtimes)
    try:
        yield _CLIENT["client"]
    finally:
        for runtime in runtimes:
            runtime.stop()


def fan_out(replay: ReplayServer, bucket: str, first: str, last: str) -> dg.ExecuteInProcessResult:
    env = {
        "API_URL": replay.url, "BUCKET_NAME": bucket, "PREFIX": "fanout/usa",
        "EXECUTION_MODE": "lambda", "LAMBDA_FUNCTION_NAME": "covid-daily-reports-backfill",
        "LAMBDA_CHUNK_DAYS": "4", "LAMBDA_PARALLELISM": "2",
    }  # fmt: skip
    defs = build_definitions(load_settings(env))
    fanout = defs.resources["lambda_fanout"]
    resources = {**defs.resources, "lambda_fanout": LocalFanout(**fanout.model_dump())}
    return materialize_days(defs, first, last, resources=resources)


def test_fanout_materializes_a_range_through_parallel_invocations(
    containers: LocalLambdaClient, replay: ReplayServer, s3_bucket: str
) -> None:
    replay.set_faults([Fault(kind="empty", dates=["2021-01-06"])])
    result = fan_out(replay, s3_bucket, "2021-01-01", "2021-01-10")
    assert result.success

    days = [f"2021-01-{day:02d}" for day in range(1, 11) if day != 6]
    keys = s3_keys(s3_bucket)
    assert sorted(keys) == [f"fanout/usa/date={day}/data.parquet" for day in days]
    events = {
        e.partition: e.metadata
        for e in result.asset_materializations_for_node("covid_daily_reports")
    }
    assert len(events) == 10  # one materialization per day, written or skipped
    assert events["2021-01-06"]["skipped"].value is True
    for day in days:
        assert (
            events[day]["dagster/uri"].value
            == f"s3://{s3_bucket}/fanout/usa/date={day}/data.parquet"
        )
        assert events[day]["dagster/row_count"].value > 50
        assert events[day]["execution"].value == "lambda"
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        "schema_as_documented": True, "cumulative_counts_non_negative": True,
        "names_present": True, "row_count_steady": True,
    }  # fmt: skip
    # Three chunks (4, 4, 2 days) on two containers: one container was reused warm.
    assert sorted(containers.invocations.values()) == [1, 2]
    assert replay.stats()["max_requests_per_day"] == 1


def test_fanout_failure_names_failed_days_and_keeps_the_rest(
    containers: LocalLambdaClient, replay: ReplayServer, s3_bucket: str
) -> None:
    replay.set_faults([Fault(kind="drop_field", field="deaths", dates=["2021-01-03"])])
    result = fan_out(replay, s3_bucket, "2021-01-01", "2021-01-08")
    message = failure_message(result)
    assert message.startswith("1 of 8 days failed in Lambda covid-daily-reports-backfill:\n")
    assert "  2021-01-03: record 0 (Alabama): missing required field 'deaths'" in message
    assert "The other 7 of 8 days were written" in message
    assert len(s3_keys(s3_bucket)) == 7  # every other day written whole
    # ... and recorded as materialized, each with its file; the failed day is not.
    events = {
        e.partition: e.metadata
        for e in result.asset_materializations_for_node("covid_daily_reports")
    }
    assert sorted(events) == [f"2021-01-0{day}" for day in (1, 2, 4, 5, 6, 7, 8)]
    assert events["2021-01-04"]["dagster/uri"].value.endswith("date=2021-01-04/data.parquet")
