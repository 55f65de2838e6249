"""Proof that dist/lambda.zip runs, under the real Lambda runtime client.

The zip is unpacked into an empty folder and started by awslambdaric under a clean Python 3.12
without site-packages, invoked through a local Lambda Runtime API, against the replay API and
each S3 server (moto, then Ceph RGW).
"""

from pathlib import Path

import pytest
from covid_pipeline_replay.server import ReplayServer

from covid_pipeline_tests.support.lambda_runtime import (
    LambdaRuntime,
    function_environment,
    python312,
)
from covid_pipeline_tests.support.s3 import S3Server
from covid_pipeline_tests.test_lambda_handler import assert_same_objects_as_the_dagster_asset

pytestmark = pytest.mark.slow

HANDLER = "covid_pipeline.lambda_handler.handler"


def test_lambda_package_runs_under_the_real_runtime_client(
    function_root: Path, replay: ReplayServer, any_s3_bucket: str, s3_server: S3Server
) -> None:
    s3_bucket = any_s3_bucket
    env = function_environment(function_root, replay.url, s3_bucket, "zip/usa", s3_server.endpoint)
    runtime = LambdaRuntime(python312(), function_root, HANDLER, env)
    try:
        kind, answer = runtime.invoke({"start_date": "2021-01-01", "end_date": "2021-01-31"})
        assert kind == "response", answer
        assert answer["counts"]["written"] == 31 and answer["remaining"] == []
        assert_same_objects_as_the_dagster_asset(replay, s3_bucket, "zip", 31)

        kind, error = runtime.invoke({"start_date": "2021-01-31", "end_date": "2021-01-01"})
        assert (kind, error["errorType"]) == ("error", "InvalidEventError")
        assert "end_date 2021-01-01 is before start_date 2021-01-31" in error["errorMessage"]

        # Warm: the same process answers again.
        kind, answer = runtime.invoke({"start_date": "2021-01-15", "end_date": "2021-01-15"})
        assert (kind, answer["written"]) == ("response", ["2021-01-15"])
        # The handler's progress reaches the function's log (CloudWatch, in AWS).
        assert "backfilling USA 2021-01-01..2021-01-31 into s3://" in runtime.log_path.read_text()
    finally:
        runtime.stop()
