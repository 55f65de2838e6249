"""The opt-in fan-out: the range in chunks, each run by the packaged function, in parallel.

Each chunk goes through dagster_aws.pipes.PipesLambdaClient and reports back via Pipes.

The Lambda service cannot run here. LocalLambdaClient implements the Invoke contract that
PipesLambdaClient relies on (Payload, LogResult, FunctionError) by running the built zip under
the real runtime client, one process per container, so warm containers are reused as in AWS.
"""

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from covid_pipeline_replay.server import Fault, ReplayServer

from covid_pipeline.core.config import load_settings
from covid_pipeline.core.lake import parquet
from covid_pipeline.definitions import build_definitions
from covid_pipeline.fanout import LambdaFanoutResource
from covid_pipeline_tests.support.deployment import failure_message, materialize_days
from covid_pipeline_tests.support.lambda_runtime import (
    LambdaRuntime,
    LocalLambdaClient,
    function_environment,
    python312,
)
from covid_pipeline_tests.support.project import PROJECT_ROOT
from covid_pipeline_tests.support.s3 import s3_keys

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
    # Each file names the run as its writer, and the invocation that wrote it for the run.
    s3 = boto3.client("s3")
    for key in keys:
        body = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
        writer = parquet.stamp_of(
            pq.read_metadata(pa.BufferReader(body)).metadata, parquet.WRITER_KEY
        )
        assert writer is not None and parquet.dagster_run_of(writer) == result.run_id, writer
        assert "(lambda covid-daily-reports-backfill request " in writer
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


# A fan-out run in a process of its own, so that it can be sent a signal: the packaged
# function in two local containers, sixteen days in chunks of two, two invocations at once.
FANOUT_RUN = f"""
import json, sys
from pathlib import Path
import dagster as dg
from covid_pipeline.core.config import load_settings
from covid_pipeline.definitions import build_definitions
from covid_pipeline.fanout import LambdaFanoutResource
from covid_pipeline_tests.support.deployment import materialize_days
from covid_pipeline_tests.support.lambda_runtime import (
    LambdaRuntime, LocalLambdaClient, function_environment, python312)
root, api, bucket, s3, out = sys.argv[1:]
env = function_environment(Path(root), api, bucket, "fanout/usa", s3)
runtimes = [LambdaRuntime(python312(), Path(root), "{HANDLER}", env) for _ in range(2)]
client = LocalLambdaClient(runtimes)
class LocalFanout(LambdaFanoutResource):
    def lambda_client(self):
        return client
settings = load_settings({{"API_URL": api, "BUCKET_NAME": bucket, "PREFIX": "fanout/usa",
    "EXECUTION_MODE": "lambda", "LAMBDA_FUNCTION_NAME": "covid-daily-reports-backfill",
    "LAMBDA_CHUNK_DAYS": "2", "LAMBDA_PARALLELISM": "2"}})
defs = build_definitions(settings)
fanout = LocalFanout(**defs.resources["lambda_fanout"].model_dump())
with dg.instance_for_test() as instance:
    materialize_days(defs, "2021-01-01", "2021-01-16", instance=instance,
                     resources={{**defs.resources, "lambda_fanout": fanout}})
    [run] = instance.get_runs()
    events = [e.dagster_event for e in instance.all_logs(run.run_id) if e.dagster_event]
    materialized = sorted(e.event_specific_data.materialization.partition for e in events
                          if e.event_type_value == "ASSET_MATERIALIZATION")
json.dump({{"status": run.status.value, "kinds": [e.event_type_value for e in events],
           "materialized": materialized,
           "invocations": sum(client.invocations.values())}}, open(out, "w"))
for runtime in runtimes:
    runtime.stop()
"""


@pytest.mark.reliability(
    "Stop",
    "Ctrl-C into a run that fans its range out to Lambda (8 invocations, 2 at a time)",
    "no invocation starts after the signal; the two running finish, and the days they wrote "
    "are materialized; the run ends canceled or failed",
)
def test_fanout_stop_starts_no_invocation_after_the_signal(
    function_root: Path, replay: ReplayServer, s3_bucket: str, aws: str, tmp_path: Path
) -> None:
    replay.latency_s = 2.0  # an invocation takes seconds: long enough to stop the run mid-way
    out = tmp_path / "outcome.json"
    command = [sys.executable, "-c", FANOUT_RUN, str(function_root), replay.url, s3_bucket, aws]
    process = subprocess.Popen([*command, str(out)], cwd=PROJECT_ROOT)
    deadline = time.monotonic() + 120
    while replay.stats()["requests"] < 2:  # both first invocations are fetching
        assert process.poll() is None and time.monotonic() < deadline, "nothing was invoked"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 0
    outcome = json.loads(out.read_text())
    assert outcome["status"] in ("CANCELED", "FAILURE")
    assert outcome["kinds"].count("STEP_START") == 1  # not retried
    assert outcome["invocations"] == 2  # the two running; none of the six not yet started
    written = sorted(key.split("date=")[1][:10] for key in s3_keys(s3_bucket))
    assert len(written) == 4 and outcome["materialized"] == written
    assert replay.stats()["requests"] == 4
