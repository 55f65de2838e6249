"""Fan the daily asset's range out over AWS Lambda: a chunk of days per invocation, in parallel.

Opt-in (EXECUTION_MODE=lambda) for backfills that outgrow one machine. Each chunk runs the
packaged handler through `dagster_aws.pipes.PipesLambdaClient`, which adds the Pipes bootstrap
keys to the event and reads the handler's report from the log tail the invocation returns.
The Lambda writes the files itself, to the same keys the IO manager would use.
"""

from concurrent.futures import Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from typing import Any

import boto3
import dagster as dg
from dagster_aws.pipes import PipesLambdaClient

from covid_pipeline.core.engine.report import Progress
from covid_pipeline.core.lake.day_files import WrittenFile
from covid_pipeline.core.lake.layout import partition_key, s3_uri


class LambdaFanoutResource(dg.ConfigurableResource):
    """Whether and how the daily asset runs its days in the backfill Lambda."""

    enabled: bool = False
    function_name: str = ""
    chunk_days: int = 31
    parallelism: int = 4

    def lambda_client(self) -> Any:
        """The Lambda client to invoke with (boto3's; tests give one that runs the zip locally)."""
        return boto3.client("lambda")


@dataclass
class FanoutOutcome:
    """Every day of the range, merged from the invocations' reports."""

    written: dict[str, WrittenFile] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    check_failures: dict[str, dict[str, str]] = field(default_factory=dict)
    invocations: int = 0
    # Set when the run was told to stop: no invocation started after it.
    stopped: BaseException | None = None


def run_in_lambda(
    context: dg.AssetExecutionContext, fanout: LambdaFanoutResource, days: list[str]
) -> FanoutOutcome:
    """Invoke the function once per chunk of `days`, `parallelism` at a time; merge the reports."""
    chunks = [days[i : i + fanout.chunk_days] for i in range(0, len(days), fanout.chunk_days)]
    context.log.info(
        f"fanning {len(days)} days out to Lambda {fanout.function_name}: {len(chunks)} "
        f"invocations of up to {fanout.chunk_days} days, {fanout.parallelism} at a time"
    )
    client = fanout.lambda_client()
    outcome = FanoutOutcome()
    progress = Progress("backfilled in Lambda", len(days), context.log.info)
    pool = ThreadPoolExecutor(max_workers=fanout.parallelism, thread_name_prefix="lambda")
    futures = {
        pool.submit(_invoke, context, client, fanout.function_name, chunk): chunk
        for chunk in chunks
    }
    try:
        for future in as_completed(futures):
            _settle(outcome, futures[future], future, progress)
    except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError) as stop:
        # No invocation starts after a stop. Those running cannot be called back (Lambda has
        # no cancel), so they finish, and what they wrote is reported before the run ends.
        pool.shutdown(wait=False, cancel_futures=True)
        running = {f: chunk for f, chunk in futures.items() if not f.cancelled() and not f.done()}
        context.log.warning(
            f"stopping: no further invocation; waiting for the {len(running)} running"
        )
        wait(running)
        for future, chunk in running.items():
            _settle(outcome, chunk, future, progress)
        outcome.stopped = stop
    finally:
        pool.shutdown(wait=True)
    outcome.invocations = sum(not future.cancelled() for future in futures)
    return outcome


def _settle(outcome: FanoutOutcome, chunk: list[str], future: Future, progress: Progress) -> None:
    try:
        _merge(outcome, future.result())
    except Exception as error:  # an invocation that failed as a whole fails its days
        cause = f"invocation for {chunk[0]}..{chunk[-1]} failed: {error}"
        outcome.failed.update(dict.fromkeys(chunk, cause[:2000]))
    for day in chunk:
        progress.tick(failed=day in outcome.failed)


def _invoke(
    context: dg.AssetExecutionContext, client: Any, function_name: str, chunk: list[str]
) -> dict[str, Any]:
    # One PipesLambdaClient per invocation: its message reader holds per-invocation state.
    completed = PipesLambdaClient(client=client).run(
        context=context,
        function_name=function_name,
        event={"start_date": chunk[0], "end_date": chunk[-1]},
    )
    messages = completed.get_custom_messages()
    if not messages:
        raise RuntimeError(
            "no report came back through Pipes (it travels in the 4 KB log tail: "
            "lower LAMBDA_CHUNK_DAYS if many days fail at once)"
        )
    report: dict[str, Any] = messages[-1]
    return report


def _merge(outcome: FanoutOutcome, report: dict[str, Any]) -> None:
    for day, (rows, size) in report["written"].items():
        uri = s3_uri(report["bucket"], partition_key(report["prefix"], day))
        outcome.written[day] = WrittenFile(day=day, uri=uri, rows=rows, bytes=size)
    outcome.skipped += report["skipped"]
    outcome.failed.update(report["failed"])
    not_started = "not started before the Lambda's deadline; re-run the range"
    outcome.failed.update(dict.fromkeys(report["remaining"], not_started))
    outcome.check_failures.update(report["check_failures"])
