"""Proof that dist/lambda.zip runs, under the real Lambda runtime client.

The zip is unpacked into an empty folder and started by awslambdaric under a clean Python 3.12
without site-packages, invoked through a local Lambda Runtime API, against the replay API and
the S3 server.
"""

import glob
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from covid_pipeline.replay.server import ReplayServer
from covid_pipeline_tests.conftest import PROJECT_ROOT
from covid_pipeline_tests.lambda_runtime import LambdaRuntime, clean_environment
from covid_pipeline_tests.test_lambda_handler import assert_same_objects_as_the_dagster_asset

pytestmark = pytest.mark.slow

AWSLAMBDARIC = "awslambdaric==4.2.2"  # what AWS's python3.12 runtime runs; for the target only


def python312() -> str:
    """A real Python 3.12 (pyenv's shims answer to the name but may not run it)."""
    candidates = sorted(glob.glob("/root/.pyenv/versions/3.12*/bin/python3.12"))
    candidates += [found] if (found := shutil.which("python3.12")) else []
    for candidate in candidates:
        version = subprocess.run([candidate, "--version"], capture_output=True, text=True)
        if version.returncode == 0 and version.stdout.startswith("Python 3.12"):
            return candidate
    pytest.skip("no Python 3.12 on this machine: the packaged handler needs the Lambda runtime's")


@pytest.fixture(scope="module")
def function_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built zip, unpacked into an empty folder, as Lambda unpacks it into /var/task."""
    build = tmp_path_factory.mktemp("lambda")
    zip_path = build / "lambda.zip"
    subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "build_lambda.py"), "--out", str(zip_path)],
        check=True,
    )
    task = build / "task"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(task)
    runtime = build / "runtime"
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--target", str(runtime),
            "--only-binary=:all:", "--implementation", "cp", "--python-version", "3.12",
            "--platform", "manylinux2014_x86_64", AWSLAMBDARIC,
        ],
        check=True,
    )  # fmt: skip
    return task


def test_lambda_package_runs_under_the_real_runtime_client(
    function_root: Path, replay: ReplayServer, s3_bucket: str, aws: str
) -> None:
    env = {
        **clean_environment(),
        "PYTHONPATH": f"{function_root}:{function_root.parent / 'runtime'}",
        "BUCKET_NAME": s3_bucket, "API_URL": replay.url, "ISO_CODE": "USA",
        "PREFIX": "zip/usa", "FETCH_CONCURRENCY": "4",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": aws,
    }  # fmt: skip
    runtime = LambdaRuntime(
        python312(), function_root, "covid_pipeline.lambda_handler.handler", env
    )
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
