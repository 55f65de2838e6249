"""Run SQL in Athena and read every page of the result.

Start the query in a workgroup (whose settings, such as the results location and the
bytes-scanned cutoff, apply), poll until it ends, surface Athena's own reason when it fails,
and stop it when it runs past the timeout, so that it stops costing money.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DONE_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


class AthenaQueryError(RuntimeError):
    """The query failed, was cancelled, or did not finish in time."""


@dataclass(frozen=True)
class QueryResult:
    """A finished query: its columns, rows (as strings, as Athena returns them) and cost."""

    query_id: str
    columns: list[str]
    rows: list[list[str | None]]
    bytes_scanned: int
    runtime_ms: int


def run_query(
    athena: Any,
    sql: str,
    *,
    database: str,
    workgroup: str = "primary",
    output_location: str | None = None,
    poll_interval_s: float = 1.0,
    timeout_s: float = 300.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> QueryResult:
    """Run `sql` and return all of its rows.

    Raises:
        AthenaQueryError: with Athena's reason when the query fails or is cancelled, or when it
            runs past `timeout_s` (the query is then stopped).
    """
    request: dict[str, Any] = {
        "QueryString": sql,
        "QueryExecutionContext": {"Database": database},
        "WorkGroup": workgroup,
    }
    if output_location:
        request["ResultConfiguration"] = {"OutputLocation": output_location}
    query_id = athena.start_query_execution(**request)["QueryExecutionId"]
    deadline = clock() + timeout_s
    while True:
        execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
        state = execution["Status"]["State"]
        if state in DONE_STATES:
            break
        if clock() >= deadline:
            athena.stop_query_execution(QueryExecutionId=query_id)
            raise AthenaQueryError(
                f"query {query_id} still {state} after {timeout_s:.0f}s; it was stopped"
            )
        sleep(poll_interval_s)
    if state != "SUCCEEDED":
        status = execution["Status"]
        reason = status.get("AthenaError", {}).get("ErrorMessage") or status.get(
            "StateChangeReason", "no reason given"
        )
        raise AthenaQueryError(f"query {query_id} {state}: {reason}")

    columns: list[str] = []
    rows: list[list[str | None]] = []
    for page in athena.get_paginator("get_query_results").paginate(QueryExecutionId=query_id):
        result_set = page["ResultSet"]
        page_rows = [
            [cell.get("VarCharValue") for cell in row["Data"]] for row in result_set["Rows"]
        ]
        if not columns:
            columns = [c["Name"] for c in result_set["ResultSetMetadata"]["ColumnInfo"]]
            # The first row of the first page repeats the column names for SELECT queries.
            if page_rows and page_rows[0] == columns:
                page_rows = page_rows[1:]
        rows.extend(page_rows)
    statistics = execution.get("Statistics", {})
    return QueryResult(
        query_id=query_id,
        columns=columns,
        rows=rows,
        bytes_scanned=statistics.get("DataScannedInBytes", 0),
        runtime_ms=statistics.get("EngineExecutionTimeInMillis", 0),
    )
