"""Bad input at the Dagster entry points: run config, environment, and the CLI's partitions.

Each is refused with one clear error before any request or write. (The Lambda's event and
environment are in test_lambda_handler.py; the settings' rules in test_config.py.)
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from covid_pipeline_replay.server import ReplayServer

from covid_pipeline.core.config import load_settings
from covid_pipeline.definitions import build_definitions
from covid_pipeline_tests.support.deployment import failure_message, materialize_days

pytestmark = pytest.mark.usefixtures("replay")


def run_config_case(resource: str, field: str, value: str, message: str):
    """A resource field set to `value` in run config (as the launchpad would), and its error."""
    mark = pytest.mark.reliability(
        "Bad input",
        f"Dagster run config: {resource}.{field} = {value!r}",
        "the run fails at once, not retried, naming the value; nothing fetched or written",
    )
    return pytest.param(resource, field, value, message, marks=mark, id=f"{field}={value}")


@pytest.mark.parametrize(
    ("resource", "field", "value", "message"),
    [
        run_config_case("covid_api", "iso_code", "USA&iso=CAN", "ISO_CODE 'USA&iso=CAN' must"),
        run_config_case("covid_api", "api_url", "file:///etc/passwd", "must be an http://"),
        run_config_case("hive_parquet_io_manager", "prefix", "../outside", "must not contain '..'"),
        run_config_case(
            "hive_parquet_io_manager", "prefix", "/lake/usa/", "must not start or end with '/'"
        ),
        run_config_case(
            "hive_parquet_io_manager", "bucket_name", "s3://lake", "not a valid S3 bucket name"
        ),
    ],
)
def test_bad_input_run_config_fails_the_run_before_any_request(
    replay: ReplayServer, tmp_path: Path, resource: str, field: str, value: str, message: str
) -> None:
    settings = load_settings({"API_URL": replay.url, "WAREHOUSE_DIR": str(tmp_path)})
    defs = build_definitions(settings)
    required = {  # the launchpad sends a resource's whole config
        "covid_api": {"api_url": replay.url, "iso_code": "USA"},
        "hive_parquet_io_manager": {"prefix": settings.prefix},
    }
    # What the launchpad sends when a resource's field is edited before a launch.
    run_config = {"resources": {resource: {"config": {**required[resource], field: value}}}}
    result = materialize_days(defs, "2021-01-05", run_config=run_config)
    assert message in failure_message(result)
    assert replay.stats()["requests"] == 0  # and so not retried either
    assert list(tmp_path.rglob("*.parquet")) == []


def cli_case(args: list[str], message: str, case: str):
    mark = pytest.mark.reliability(
        "Bad input",
        f"`dagster asset materialize`: {case}",
        "refused with an error naming it; nothing fetched or written",
    )
    return pytest.param(args, message, marks=mark, id=case)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        cli_case(
            ["--partition", "2019-12-31"],
            "must have a PartitionsDefinition containing the passed partition key `2019-12-31`",
            "a day before the data starts",
        ),
        cli_case(
            ["--partition", "2021-02-30"],
            "containing the passed partition key `2021-02-30`",
            "an impossible date",
        ),
        cli_case(
            ["--partition", "2021/01/01"],
            "containing the passed partition key `2021/01/01`",
            "a malformed date",
        ),
        cli_case(
            ["--partition-range", "2021-01-05...2021-01-01"],
            "this run targets no day: give the range as START...END, start first",
            "a reversed range",
        ),
    ],
)
def test_bad_input_cli_partitions_are_refused(
    replay: ReplayServer, tmp_path: Path, args: list[str], message: str
) -> None:
    output = run_cli(replay, tmp_path, {}, args)
    assert message in output
    assert replay.stats()["requests"] == 0 and list(tmp_path.rglob("*.parquet")) == []


@pytest.mark.slow
@pytest.mark.reliability(
    "Bad input",
    "`dagster asset materialize` with ISO_CODE='U/S', PREFIX='a//b', BUCKET_NAME='x', "
    "API_URL='ftp://…' in the environment",
    "the code location does not load: one message listing all four; nothing fetched",
)
def test_bad_input_environment_stops_the_cli_with_every_problem(
    replay: ReplayServer, tmp_path: Path
) -> None:
    env = {"ISO_CODE": "U/S", "PREFIX": "a//b", "BUCKET_NAME": "x", "API_URL": "ftp://example"}
    output = run_cli(replay, tmp_path, env, ["--partition", "2021-01-01"])
    assert "Invalid settings (fix the environment or .env, see .env.example)" in output
    for expected in ("ISO_CODE 'U/S'", "PREFIX 'a//b'", "BUCKET_NAME 'x'", "API_URL 'ftp://"):
        assert expected in output
    assert replay.stats()["requests"] == 0


def run_cli(replay: ReplayServer, tmp_path: Path, env: dict[str, str], args: list[str]) -> str:
    """`dagster asset materialize` over the daily asset; it must fail. Returns its output."""
    command = [
        str(Path(sys.executable).with_name("dagster")), "asset", "materialize",
        "-m", "covid_pipeline.definitions", "--select", "covid_daily_reports", *args,
    ]  # fmt: skip
    result = subprocess.run(
        command,
        env={
            **os.environ,
            "API_URL": replay.url,
            "WAREHOUSE_DIR": str(tmp_path),
            "DAGSTER_HOME": str(tmp_path),
            **env,
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0, result.stdout[-2000:]
    return result.stdout + result.stderr
