"""The Lambda handler, called as the runtime calls it, against the replay API and S3 servers.

Each test that writes runs twice: against moto, then against Ceph RGW, a real S3 server.
The Lambda service itself cannot run here: the context is a fake with the real method the
handler uses (`get_remaining_time_in_millis`), as in Powertools' examples.
"""

import importlib
import io
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType

import boto3
import pyarrow.parquet as pq
import pytest
from covid_pipeline_replay.server import Fault, ReplayServer

from covid_pipeline.core.catalog.glue import registered_days
from covid_pipeline.core.config import load_settings
from covid_pipeline.core.errors import ConfigError
from covid_pipeline.core.lake import parquet
from covid_pipeline.core.lake.stores import StorageAccessError
from covid_pipeline.definitions import build_definitions
from covid_pipeline_tests.support.deployment import materialize_days
from covid_pipeline_tests.support.fakes import FakeContext
from covid_pipeline_tests.support.project import infra_template
from covid_pipeline_tests.support.s3 import S3_SERVERS, new_bucket, s3_keys, use_s3_server


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
    ours = days_in(bucket, f"{prefix}/")
    assert ours == days_in(bucket, "dagster/") and len(ours) == days
    s3 = boto3.client("s3")
    for day in ours:  # the same schema, rows and country set; each names its own writer
        suffix = f"/usa/date={day}/data.parquet"
        lambda_file, dagster_file = (
            pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
            for key in (f"{prefix}{suffix}", f"dagster{suffix}")
        )
        assert lambda_file.equals(dagster_file), day
        stamps = [dict(table.schema.metadata) for table in (lambda_file, dagster_file)]
        assert [s.pop(parquet.WRITER_KEY).decode().split()[0] for s in stamps] == [
            "lambda", "dagster"
        ]  # fmt: skip
        assert stamps[0] == stamps[1], day


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


def cold_start(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    """The handler module after a cold start with `env` added to the function's environment."""
    import covid_pipeline.lambda_handler as module

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return importlib.reload(module)


@ONLY_MOTO
def test_lambda_handler_registers_exactly_the_days_it_wrote_in_glue(
    lambda_env: str, replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Moto's Glue, for real: the table and exactly the written days (not the skipped one)."""
    module = cold_start(
        monkeypatch, CATALOG_MODE="glue_partitions", GLUE_DATABASE="lambda_partitions"
    )
    replay.set_faults([Fault(kind="empty", dates=["2021-01-03"])])
    answer = module.handler({"start_date": "2021-01-01", "end_date": "2021-01-05"}, FakeContext())
    assert answer["catalog"] == {
        "mode": "glue_partitions", "database": "lambda_partitions",
        "table": "covid_daily_reports_usa", "location": f"s3://{lambda_env}/lambda/usa/",
        "table_created": True, "partitions_created": 4, "partitions": 4,
    }  # fmt: skip
    glue = boto3.client("glue")
    assert (
        registered_days(glue, "lambda_partitions", "covid_daily_reports_usa") == answer["written"]
    )
    location = glue.get_table(DatabaseName="lambda_partitions", Name="covid_daily_reports_usa")
    assert location["Table"]["StorageDescriptor"]["Location"] == f"s3://{lambda_env}/lambda/usa/"
    again = module.handler({"start_date": "2021-01-05", "end_date": "2021-01-06"}, FakeContext())
    assert again["catalog"]["partitions_created"] == 1 and again["catalog"]["partitions"] == 5


@ONLY_MOTO
def test_lambda_handler_declares_the_projected_table(
    lambda_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = cold_start(
        monkeypatch, CATALOG_MODE="glue_projection", GLUE_DATABASE="lambda_projection"
    )
    answer = module.handler({"start_date": "2021-01-01", "end_date": "2021-01-02"}, FakeContext())
    assert answer["catalog"] | {"projection_updated": None} == {
        "mode": "glue_projection", "database": "lambda_projection",
        "table": "covid_daily_reports_usa", "location": f"s3://{lambda_env}/lambda/usa/",
        "table_created": True, "projection_updated": None,
        "projected_days": "2020-01-22..2023-03-09",
    }  # fmt: skip
    table = boto3.client("glue").get_table(
        DatabaseName="lambda_projection", Name="covid_daily_reports_usa"
    )["Table"]
    assert table["Parameters"]["projection.enabled"] == "true"


@ONLY_MOTO
def test_lambda_handler_starts_the_crawler_and_never_waits_for_it(
    lambda_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Moto's crawler starts and stays RUNNING (it never crawls): the handler does not wait."""
    glue = boto3.client("glue")
    glue.create_crawler(
        Name="lambda-crawler", Role="arn:aws:iam::123456789012:role/crawler",
        DatabaseName="covid", Targets={"S3Targets": [{"Path": f"s3://{lambda_env}/lambda/usa/"}]},
    )  # fmt: skip
    module = cold_start(
        monkeypatch, CATALOG_MODE="glue_crawler", GLUE_CRAWLER_NAME="lambda-crawler"
    )
    event = {"start_date": "2021-01-01", "end_date": "2021-01-01"}
    answer = module.handler(event, FakeContext())
    assert answer["catalog"] == {
        "mode": "glue_crawler",
        "crawler": "lambda-crawler",
        "started": True,
    }
    assert glue.get_crawler(Name="lambda-crawler")["Crawler"]["State"] == "RUNNING"
    # A crawl already running is fine: the answer says so, and the files are written.
    again = module.handler(event, FakeContext())
    assert again["catalog"]["started"] is False and again["written"] == ["2021-01-01"]


@pytest.mark.reliability(
    "Storage",
    "Lambda: the Glue table of the prefix has another location (a catalog that refuses)",
    "the days are written and reported; the answer's catalog entry names the refusal",
)
@ONLY_MOTO
def test_lambda_handler_reports_a_catalog_failure_after_writing(
    lambda_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    glue = boto3.client("glue")
    glue.create_database(DatabaseInput={"Name": "lambda_refused"})
    glue.create_table(
        DatabaseName="lambda_refused",
        TableInput={
            "Name": "covid_daily_reports_usa",
            "StorageDescriptor": {"Columns": [], "Location": "s3://elsewhere/other/"},
            "PartitionKeys": [{"Name": "date", "Type": "string"}],
        },
    )
    module = cold_start(monkeypatch, CATALOG_MODE="glue_partitions", GLUE_DATABASE="lambda_refused")
    answer = module.handler({"start_date": "2021-01-01", "end_date": "2021-01-02"}, FakeContext())
    assert answer["written"] == ["2021-01-01", "2021-01-02"]
    assert days_in(lambda_env, "lambda/") == ["2021-01-01", "2021-01-02"]  # never rolled back
    assert answer["catalog"]["mode"] == "glue_partitions"
    assert answer["catalog"]["error"].startswith("GlueCatalogError")


def function_glue_actions(condition: str) -> set[str]:
    """The Glue actions infra/template.yaml grants the function under `condition`."""
    role = infra_template()["Resources"]["FunctionRole"]["Properties"]
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    granted: set[str] = set()
    for statement in statements:
        if isinstance(statement, list):  # !If [condition, statement, !Ref AWS::NoValue]
            if statement[0] != condition:
                continue
            statement = statement[1]
        actions = statement["Action"]
        granted |= {a for a in ([actions] if isinstance(actions, str) else actions)}
    return {action for action in granted if action.startswith("glue:")}


@ONLY_MOTO
@pytest.mark.parametrize(
    ("mode", "condition"), [("glue_crawler", "UseCrawler"), ("glue_projection", "UseProjection")]
)
def test_lambda_handler_calls_exactly_the_glue_actions_the_template_grants(
    lambda_env: str, monkeypatch: pytest.MonkeyPatch, mode: str, condition: str
) -> None:
    """Every Glue call the handler makes is granted to the function, and nothing else is."""
    glue = boto3.client("glue")
    glue.create_crawler(
        Name=f"grants-{mode}", Role="arn:aws:iam::123456789012:role/crawler",
        DatabaseName="covid", Targets={"S3Targets": [{"Path": f"s3://{lambda_env}/"}]},
    )  # fmt: skip
    module = cold_start(
        monkeypatch, CATALOG_MODE=mode, GLUE_CRAWLER_NAME=f"grants-{mode}",
        GLUE_DATABASE=f"grants_{mode}",
    )  # fmt: skip
    called: set[str] = set()
    module.glue_client().meta.events.register(
        "before-call.glue", lambda model, **_: called.add(f"glue:{model.name}")
    )
    event = {"start_date": "2021-01-01", "end_date": "2021-01-01"}
    assert "error" not in module.handler(event, FakeContext())["catalog"]
    granted = function_glue_actions(condition)
    assert called <= granted, called - granted
    # What is granted but not called here is a path the handler takes elsewhere: the table's
    # projection updated (UpdateTable) when it exists without it.
    assert granted - called <= {"glue:UpdateTable"}
