"""The Athena helper, against botocore's Stubber (Athena's engine cannot run here).

The Stubber checks each request and response against Athena's real API model.
"""

import boto3
import pytest
from botocore.stub import Stubber

from covid_pipeline.core.catalog.athena import AthenaQueryError, run_query
from covid_pipeline_tests.support.fakes import FakeClock

SQL = 'SELECT "date", sum(confirmed) FROM covid_daily_reports_usa GROUP BY 1'
QID = "0f7c1c1e-1111-2222-3333-444455556666"


def execution(state: str, **status) -> dict:
    return {
        "QueryExecution": {
            "QueryExecutionId": QID,
            "Status": {"State": state, **status},
            "Statistics": {"DataScannedInBytes": 1234, "EngineExecutionTimeInMillis": 321},
        }
    }


def row(*values: str) -> dict:
    return {"Data": [{"VarCharValue": v} for v in values]}


COLUMNS = {"ColumnInfo": [{"Name": "date", "Type": "varchar"}, {"Name": "_col1", "Type": "bigint"}]}


@pytest.fixture
def athena():
    client = boto3.client("athena", region_name="us-east-1")
    with Stubber(client) as stubber:
        stubber.add_response(
            "start_query_execution",
            {"QueryExecutionId": QID},
            {
                "QueryString": SQL,
                "QueryExecutionContext": {"Database": "covid"},
                "WorkGroup": "covid",
                "ResultConfiguration": {"OutputLocation": "s3://results/athena/"},
            },
        )
        yield client, stubber
        stubber.assert_no_pending_responses()


def run(client, timeout_s: float = 60):
    clock = FakeClock()
    return run_query(
        client, SQL, database="covid", workgroup="covid", output_location="s3://results/athena/",
        poll_interval_s=1, timeout_s=timeout_s, sleep=clock.sleep, clock=clock,
    )  # fmt: skip


def test_athena_polls_then_reads_every_page_without_the_header_row(athena) -> None:
    client, stub = athena
    stub.add_response("get_query_execution", execution("QUEUED"), {"QueryExecutionId": QID})
    stub.add_response("get_query_execution", execution("RUNNING"), {"QueryExecutionId": QID})
    stub.add_response("get_query_execution", execution("SUCCEEDED"), {"QueryExecutionId": QID})
    first = {"ResultSet": {"Rows": [row("date", "_col1"), row("2021-01-01", "10")],
             "ResultSetMetadata": COLUMNS}, "NextToken": "page2"}  # fmt: skip
    second = {"ResultSet": {"Rows": [row("2021-01-02", "12")], "ResultSetMetadata": COLUMNS}}
    stub.add_response("get_query_results", first, {"QueryExecutionId": QID})
    stub.add_response("get_query_results", second, {"QueryExecutionId": QID, "NextToken": "page2"})
    result = run(client)
    assert result.columns == ["date", "_col1"]
    assert result.rows == [["2021-01-01", "10"], ["2021-01-02", "12"]]
    assert (result.bytes_scanned, result.runtime_ms) == (1234, 321)


@pytest.mark.parametrize(
    ("state", "status", "reason"),
    [
        (
            "FAILED",
            {"AthenaError": {"ErrorMessage": "COLUMN_NOT_FOUND: line 1:8"}},
            "COLUMN_NOT_FOUND",
        ),
        ("FAILED", {"StateChangeReason": "Query exhausted resources"}, "Query exhausted resources"),
        (
            "CANCELLED",
            {"StateChangeReason": "Bytes scanned limit was exceeded"},
            "limit was exceeded",
        ),
    ],
)
def test_athena_failure_surfaces_athenas_reason(
    athena, state: str, status: dict, reason: str
) -> None:
    client, stub = athena
    stub.add_response("get_query_execution", execution(state, **status), {"QueryExecutionId": QID})
    with pytest.raises(AthenaQueryError, match=f"query {QID} {state}: .*{reason}"):
        run(client)


def test_athena_timeout_stops_the_query(athena) -> None:
    client, stub = athena
    for _ in range(3):
        stub.add_response("get_query_execution", execution("RUNNING"), {"QueryExecutionId": QID})
    stub.add_response("stop_query_execution", {}, {"QueryExecutionId": QID})
    with pytest.raises(AthenaQueryError, match="still RUNNING after 2s; it was stopped"):
        run(client, timeout_s=2)
