"""AWS Lambda entry point: backfill {"start_date", "end_date"} into s3://BUCKET_NAME/PREFIX/.

A thin adapter over the core, which imports nothing of Dagster: validate the event, run the
range backfill (each day written to /tmp, uploaded, deleted), return what happened. Settings,
the S3 client and the HTTP session are built once per cold start and reused while warm.
"""

import functools
import logging
import tempfile
from pathlib import Path
from typing import Any, Protocol

import boto3

from covid_pipeline.core import config
from covid_pipeline.core.catalog.refresh import refresh
from covid_pipeline.core.config import Settings, load_settings
from covid_pipeline.core.dates import parse_range
from covid_pipeline.core.engine.run import run_range
from covid_pipeline.core.errors import ConfigError
from covid_pipeline.core.lake import day_files, parquet, stores

logging.getLogger().setLevel(logging.INFO)  # the runtime's handler prints to CloudWatch
log = logging.getLogger(__name__)

_STOP_BEFORE_DEADLINE_S = 10.0  # what returning the answer and the runtime need


class LambdaContext(Protocol):
    """The part of the Lambda context object the handler uses."""

    function_name: str
    aws_request_id: str

    def get_remaining_time_in_millis(self) -> int: ...  # noqa: D102


class InvalidEventError(ValueError):
    """The event is not {"start_date": "YYYY-MM-DD", "end_date": "YYYY-MM-DD"}."""


def _cold_start() -> tuple[Settings | None, str | None]:
    try:
        return load_settings(required=("BUCKET_NAME",)), None
    except ConfigError as error:
        return None, str(error)  # reported by every invocation until the configuration is fixed


SETTINGS, SETTINGS_ERROR = _cold_start()
# One pooled connection per day being written, and the project's S3 retry budget.
S3 = (
    boto3.client("s3", config=stores.s3_client_config(SETTINGS.write_concurrency))
    if SETTINGS
    else None
)
API = config.api_client(SETTINGS) if SETTINGS else None


def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Backfill the event's date range; return days written, skipped, failed and remaining.

    Raises:
        InvalidEventError: naming every problem with the event, before anything is written.
        ConfigError: naming every missing or invalid environment variable.
        StorageAccessError: the bucket cannot be reached or written (missing, access denied,
            bad keys); checked before the first fetch, and again by every write, which stops
            the range.
    """
    if SETTINGS is None or S3 is None or API is None:
        raise ConfigError(SETTINGS_ERROR)
    if not isinstance(event, dict):
        raise InvalidEventError(f"the event must be a JSON object, not {type(event).__name__}")
    try:
        # Larger ranges are refused up front (MAX_DAYS_PER_INVOCATION); slow days are covered
        # by the deadline check, which returns what it could not start.
        days = parse_range(
            event.get("start_date"), event.get("end_date"), SETTINGS.max_days_per_invocation
        )
    except ValueError as error:
        raise InvalidEventError(f"invalid event: {error}") from None
    API.reset_circuit()
    assert SETTINGS.bucket_name is not None  # required at the cold start
    store = config.store(SETTINGS, lambda: S3, SETTINGS.prefix)
    # A missing bucket, bad keys, or a prefix of another country set: before the first fetch.
    day_files.check_ready(store, SETTINGS.prefix, SETTINGS.countries.label)
    log.info(
        "backfilling %s %s..%s into %s", SETTINGS.iso_code, days[0], days[-1], SETTINGS.storage_root
    )
    with tempfile.TemporaryDirectory(prefix="covid-") as staging:  # under /tmp in Lambda
        outcome = run_range(
            API,
            store,
            SETTINGS.prefix,
            days,
            config.range_options(SETTINGS),
            # Invoked by a fan-out run, the files are that run's: the lake sensor leaves them
            # to it while it is in progress.
            writer=parquet.lambda_writer(
                context.function_name, context.aws_request_id, _invoking_run(event)
            ),
            staging_dir=Path(staging),
            time_left_s=lambda: (
                context.get_remaining_time_in_millis() / 1000 - _STOP_BEFORE_DEADLINE_S
            ),
            on_progress=log.info,
        )
    answer = outcome.to_json()
    log.info("done: %s", answer["counts"])
    if PIPES_CONTEXT_KEY in event:
        # The fan-out: the run's catalog asset catalogs the whole backfill once, after it.
        answer["catalog"] = _catalog_skipped("invoked by Dagster, whose catalog asset runs after")
        _report_to_dagster(event, answer, SETTINGS)
    elif outcome.written:
        answer["catalog"] = _catalog(store, sorted(outcome.written))
    else:
        answer["catalog"] = _catalog_skipped("no day was written")
    return answer


@functools.cache
def glue_client() -> Any:
    """The Glue client, made at the first catalog call and kept while the container is warm.

    Not at the cold start: only the glue modes need it, and a client that cannot be made (no
    region) must fail the catalog step in the answer, not the import of the handler.
    """
    return boto3.client("glue")


def _catalog(store: stores.Store, days: list[str]) -> dict[str, Any]:
    """Apply CATALOG_MODE to the days just written, never waiting for a crawl.

    A direct invocation must leave the catalog as current as the catalog asset leaves it, or
    Athena does not see its days. A refusal is reported in the answer, after the files are
    written; they are never rolled back for it (the next run, or the catalog asset, catalogs
    them).
    """
    assert SETTINGS is not None
    target = config.catalog_target(SETTINGS)
    try:
        return refresh(target, store, SETTINGS.prefix, glue_client, days=days, wait_for_crawl=False)
    except Exception as error:  # the files are written: no catalog error may lose the answer
        # (Glue's refusals, an endpoint that is not Glue, a table of another shape alike)
        log.error("cataloging in %s mode failed: %s", target.mode, error)
        return {"mode": target.mode, "error": f"{type(error).__name__}: {error}"[:500]}


def _catalog_skipped(why: str) -> dict[str, str]:
    assert SETTINGS is not None
    return {"mode": SETTINGS.catalog_mode, "done": f"nothing: {why}"}


PIPES_CONTEXT_KEY = "DAGSTER_PIPES_CONTEXT"  # PipesLambdaClient adds it to the event
_MAX_CAUSE = 150  # the report travels in the 4 KB log tail that Lambda returns


def _invoking_run(event: dict[str, Any]) -> str | None:
    """The id of the Dagster run that invoked us through Pipes (the fan-out), or None."""
    if PIPES_CONTEXT_KEY not in event:
        return None
    from dagster_pipes import PipesDefaultContextLoader, PipesMappingParamsLoader

    params = PipesMappingParamsLoader(event).load_context_params()
    with PipesDefaultContextLoader().load_context(params) as data:
        return str(data["run_id"])


def _report_to_dagster(event: dict[str, Any], answer: dict[str, Any], settings: Settings) -> None:
    """Send the answer to the Dagster run that invoked us, through Dagster Pipes."""
    # Imported only when Dagster invoked us: plain invocations load nothing of Pipes.
    from dagster_pipes import PipesContext, PipesMappingParamsLoader, open_dagster_pipes

    # A warm container still holds the previous invocation's closed context, which
    # open_dagster_pipes would return and refuse to write to (dagster issue 22094).
    PipesContext._instance = None
    with open_dagster_pipes(params_loader=PipesMappingParamsLoader(event)) as pipes:
        pipes.report_custom_message(
            {
                "bucket": settings.bucket_name,
                "prefix": settings.prefix,
                "written": {d: [f["rows"], f["bytes"]] for d, f in answer["files"].items()},
                "skipped": answer["skipped"],
                "failed": {d: c[:_MAX_CAUSE] for d, c in answer["failed"].items()},
                "remaining": answer["remaining"],
                "check_failures": answer["check_failures"],
            }
        )
