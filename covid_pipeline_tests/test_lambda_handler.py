"""The Lambda handler, called as the runtime calls it, against the replay API and S3 servers.

Each test that writes runs twice: against moto, then against Ceph RGW, a real S3 server.
The Lambda service itself cannot run here: the context is a fake with the real method the
handler uses (`get_remaining_time_in_millis`), as in Powertools' examples.
"""

import importlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType

import pytest
from covid_pipeline_replay.server import Fault, ReplayServer

from covid_pipeline.core.config import ConfigError, load_settings
from covid_pipeline.core.stores import StorageAccessError
from covid_pipeline.definitions import build_definitions
from covid_pipeline_tests.conftest import (
    S3_SERVERS,
    materialize_days,
    new_bucket,
    s3_keys,
    use_s3_server,
)


@dataclass
class FakeContext:
    """A LambdaContext whose remaining time follows a script: one value per call, then the last."""

    remaining_ms: list[int] = field(default_factory=lambda: [900_000])
    function_name: str = "covid-daily-reports-backfill"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    calls: int = 0

    def get_remaining_time_in_millis(self) -> int:
        value = self.remaining_ms[min(self.calls, len(self.remaining_ms) - 1)]
        self.calls += 1
        return value


@pytest.fixture(params=S3_SERVERS)
def lambda_env(
    request: pytest.FixtureRequest, replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The design's environment, writing to a fresh bucket on each S3 server (moto, Ceph RGW).

    Tests of input that is refused before any write ask for moto alone (ONLY_MOTO).
    """
    use_s3_server(request, request.param)
    bucket = new_bucket()
    for name, value in {
        "BUCKET_NAME": bucket, "API_URL": replay.url, "ISO_CODE": "USA",
        "PREFIX": "lambda/usa", "FETCH_CONCURRENCY": "2", "HTTP_BACKOFF": "0",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    return bucket


ONLY_MOTO = pytest.mark.parametrize("lambda_env", ["moto"], indirect=True)


@pytest.fixture
def handler_module(lambda_env: str) -> Iterator[ModuleType]:
    """The handler module as a cold start builds it from the environment."""
    import covid_pipeline.lambda_handler as module

    yield importlib.reload(module)


def days_in(bucket: str, prefix: str) -> list[str]:
    return sorted(key.split("date=")[1][:10] for key in s3_keys(bucket) if key.startswith(prefix))


def test_lambda_handler_writes_a_month_as_the_dagster_asset_does(
    handler_module: ModuleType, lambda_env: str, replay: ReplayServer
) -> None:
    replay.set_faults([Fault(kind="empty", dates=["2021-01-20"])])
    answer = handler_module.handler(
        {"start_date": "2021-01-01", "end_date": "2021-01-31"}, FakeContext()
    )
    assert answer["counts"] | {"rows": 0, "bytes": 0} == {
        "written": 30, "skipped": 1, "failed": 0, "remaining": 0, "rows": 0, "bytes": 0,
    }  # fmt: skip
    assert answer["skipped"] == ["2021-01-20"] and answer["remaining"] == []

    assert_same_objects_as_the_dagster_asset(replay, lambda_env, "lambda", 30)


def assert_same_objects_as_the_dagster_asset(
    replay: ReplayServer, bucket: str, prefix: str, days: int
) -> None:
    """Run the Dagster asset over January 2021 into dagster/usa; compare with <prefix>/usa."""
    settings = load_settings(
        {"API_URL": replay.url, "BUCKET_NAME": bucket, "PREFIX": "dagster/usa"}
    )
    defs = build_definitions(settings)
    assert materialize_days(defs, "2021-01-01", "2021-01-31").success
    keys = s3_keys(bucket)
    ours = days_in(bucket, f"{prefix}/")
    assert ours == days_in(bucket, "dagster/") and len(ours) == days
    for day in ours:  # byte for byte: the same ETag, so the same schema and rows
        suffix = f"/usa/date={day}/data.parquet"
        assert keys[f"{prefix}{suffix}"] == keys[f"dagster{suffix}"], day


def test_lambda_handler_returns_remaining_days_at_its_deadline(
    handler_module: ModuleType, lambda_env: str, replay: ReplayServer
) -> None:
    # Plenty of time for the first three checks, then 1 second: three days start, seven wait.
    context = FakeContext(remaining_ms=[900_000, 900_000, 900_000, 1_000])
    first = handler_module.handler({"start_date": "2021-01-01", "end_date": "2021-01-10"}, context)
    assert first["written"] == ["2021-01-01", "2021-01-02", "2021-01-03"]
    assert first["remaining"] == [f"2021-01-{day:02d}" for day in range(4, 11)]
    assert days_in(lambda_env, "lambda/") == first["written"]  # nothing half-written

    event = {"start_date": first["remaining"][0], "end_date": first["remaining"][-1]}
    second = handler_module.handler(event, FakeContext())
    assert second["remaining"] == [] and len(second["written"]) == 7
    assert days_in(lambda_env, "lambda/") == [f"2021-01-{day:02d}" for day in range(1, 11)]
    assert replay.stats()["max_requests_per_day"] == 1  # no day fetched twice


@pytest.mark.reliability(
    "API",
    "Lambda: a required field missing from one day's records",
    "that day is listed in `failed` with the record and field; the other days are written",
)
def test_lambda_handler_reports_failed_days_and_keeps_the_others(
    handler_module: ModuleType, lambda_env: str, replay: ReplayServer
) -> None:
    replay.set_faults([Fault(kind="drop_field", field="deaths", dates=["2021-01-02"])])
    answer = handler_module.handler(
        {"start_date": "2021-01-01", "end_date": "2021-01-03"}, FakeContext()
    )
    assert answer["written"] == ["2021-01-01", "2021-01-03"]
    assert answer["failed"] == {"2021-01-02": "record 0 (Alabama): missing required field 'deaths'"}


def bad_event(event: object, message: str, case: str):  # one row of docs/reliability.md
    mark = pytest.mark.reliability(
        "Bad input",
        f"Lambda event: {case}",
        "InvalidEventError naming it; nothing fetched or written",
    )
    return pytest.param(event, message, marks=mark, id=case)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        bad_event({}, "start_date is missing .*; end_date is missing", "no dates"),
        bad_event({"start_date": "2021-01-01"}, "end_date is missing", "one date missing"),
        bad_event(
            {"start_date": "2021/01/01", "end_date": "2021-01-02"},
            "'2021/01/01' is not a YYYY-MM-DD",
            "a malformed date",
        ),
        bad_event(
            {"start_date": "2021-02-30", "end_date": "2021-03-01"},
            "'2021-02-30' is not a YYYY-MM-DD",
            "an impossible date (Feb 30)",
        ),
        bad_event(
            {"start_date": "2021-01-05", "end_date": "2021-01-01"},
            "end_date 2021-01-01 is before",
            "a reversed range",
        ),
        bad_event(
            {"start_date": "2019-12-31", "end_date": "2023-03-10"},
            "2019-12-31 is outside .*2023-03-10 is outside",
            "days outside the data's range",
        ),
        bad_event(
            {"start_date": 20210101, "end_date": "2021-01-02"},
            "start_date must be a YYYY-MM-DD string",
            "a number for a date",
        ),
        bad_event(
            {"start_date": "2020-01-22", "end_date": "2020-12-31"},
            "345 days is more than one invocation takes \\(100\\)",
            "more days than MAX_DAYS_PER_INVOCATION",
        ),
        bad_event([], "must be a JSON object", "not a JSON object"),
    ],
)
@ONLY_MOTO
def test_lambda_handler_refuses_bad_events_before_writing(
    handler_module: ModuleType, lambda_env: str, replay: ReplayServer,
    monkeypatch: pytest.MonkeyPatch, event: object, message: str,
) -> None:  # fmt: skip
    monkeypatch.setenv("MAX_DAYS_PER_INVOCATION", "100")
    module = importlib.reload(handler_module)
    with pytest.raises(module.InvalidEventError, match=message):
        module.handler(event, FakeContext())
    assert s3_keys(lambda_env) == {} and replay.stats()["requests"] == 0


@ONLY_MOTO
def test_lambda_handler_names_every_bad_environment_variable(
    handler_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BUCKET_NAME")
    monkeypatch.setenv("ISO_CODE", "U.S.")
    module = importlib.reload(handler_module)
    with pytest.raises(ConfigError) as error:
        module.handler({"start_date": "2021-01-01", "end_date": "2021-01-01"}, FakeContext())
    assert "BUCKET_NAME is required" in str(error.value) and "ISO_CODE 'U.S.'" in str(error.value)


@pytest.mark.reliability(
    "Bad input",
    "Lambda env: ISO_CODE with a query injection, PREFIX with '..', a bad bucket name, an "
    "API_URL that is not http(s)",
    "ConfigError listing all four; nothing fetched or written",
)
@ONLY_MOTO
def test_lambda_handler_refuses_unsafe_environment_before_any_request(
    handler_module: ModuleType, replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "ISO_CODE": "USA&iso=CAN", "PREFIX": "lake/../elsewhere",
        "BUCKET_NAME": "Not_A_Bucket", "API_URL": "file:///etc/passwd",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    module = importlib.reload(handler_module)
    with pytest.raises(ConfigError) as error:
        module.handler({"start_date": "2021-01-01", "end_date": "2021-01-01"}, FakeContext())
    message = str(error.value)
    assert "'USA&ISO=CAN' is not a code" in message
    assert "PREFIX 'lake/../elsewhere' must not contain '..'" in message
    assert "BUCKET_NAME 'Not_A_Bucket' is not a valid S3 bucket name" in message
    assert "API_URL 'file:///etc/passwd' must be an http:// or https:// URL" in message
    assert replay.stats()["requests"] == 0


@pytest.mark.reliability(
    "Storage",
    "Lambda: BUCKET_NAME names a bucket that does not exist (moto, Ceph RGW)",
    "the invocation fails with StorageAccessError naming the bucket, before any fetch",
)
def test_lambda_handler_stops_before_fetching_when_the_bucket_is_missing(
    handler_module: ModuleType, replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUCKET_NAME", "no-such-bucket-anywhere")
    module = importlib.reload(handler_module)
    with pytest.raises(
        StorageAccessError, match=r"s3://no-such-bucket-anywhere/lambda/usa: NoSuchBucket"
    ):
        module.handler({"start_date": "2021-01-01", "end_date": "2021-01-31"}, FakeContext())
    assert replay.stats()["requests"] == 0


def test_lambda_handler_reuses_its_clients_and_resets_the_breaker_when_warm(
    handler_module: ModuleType,
) -> None:
    s3, api = handler_module.S3, handler_module.API
    api.circuit.failures_in_a_row = (
        10_000  # as an earlier invocation against a dead API would leave it
    )
    event = {"start_date": "2021-01-01", "end_date": "2021-01-01"}
    assert handler_module.handler(event, FakeContext())["written"] == ["2021-01-01"]
    assert handler_module.handler(event, FakeContext())["written"] == ["2021-01-01"]
    assert handler_module.S3 is s3 and handler_module.API is api


def test_lambda_handler_imports_nothing_the_lambda_does_not_need(lambda_env: str) -> None:
    code = (
        "import sys, covid_pipeline.lambda_handler;"
        "loaded = {'dagster', 'pandas', 'duckdb', 'dagster_aws'} & set(sys.modules);"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@ONLY_MOTO
def test_lambda_handler_backfills_a_country_list_and_refuses_a_switch_of_set(
    lambda_env: str, replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import covid_pipeline.lambda_handler as module

    monkeypatch.setenv("ISO_CODE", "CAN,USA")
    handler = importlib.reload(module)
    answer = handler.handler({"start_date": "2021-01-01", "end_date": "2021-01-03"}, FakeContext())
    assert answer["counts"]["written"] == 3 and replay.stats()["requests"] == 6
    assert days_in(lambda_env, "lambda/usa") == ["2021-01-01", "2021-01-02", "2021-01-03"]

    monkeypatch.setenv("ISO_CODE", "USA")  # the same PREFIX, another set
    handler = importlib.reload(module)
    with pytest.raises(StorageAccessError, match="holds files written for CAN,USA") as error:
        handler.handler({"start_date": "2021-01-04", "end_date": "2021-01-04"}, FakeContext())
    assert "this run is for USA" in str(error.value) and replay.stats()["requests"] == 6
