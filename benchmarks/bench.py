"""Backfill benchmark: the project's core and CLI against the tools people would pick instead.

One command (`make bench`, or `python benchmarks/bench.py`) starts the replay API with a fixed
latency per request and an S3 server (moto), each in a process of its own on 127.0.0.1, and
measures, in the same run, against the same servers, days and concurrency:

  naive            the design's Lambda loop written plainly: one day after another, GET,
                   pd.json_normalize, to_parquet into /tmp, upload (light fixture only: at
                   the real volume it takes minutes and says nothing new)
  core             the project's range backfill, by calling the Lambda handler
  cli              `dagster asset materialize --partition-range`, with the project's
                   dagster-instance.yaml as its DAGSTER_HOME/dagster.yaml
  cli_postgres     the same command on the production instance, dagster-instance.postgres.yaml,
                   against a local PostgreSQL the benchmark starts for it alone, with the
                   event batching production runs with (volume profile only)
  cli_dagster_sqlite
                   the same command on dagster-instance.yaml with Dagster's own SQLite storage
                   instead of the project's (covid_pipeline/instance_storage.py): what that
                   storage saves, measured (volume profile only)
  pyarrow_per_day, pyarrow_dataset, awswrangler, dlt
                   the peers (benchmarks/peers.py), in their own virtualenv (.venv-peers)
  country_daily    the reporting table over the raw days `cli` wrote: `dagster asset
                   materialize --select covid_country_daily` on the same instance, S3 to S3
                   (volume profile only); `country_daily_local` over `cli_local`'s, local to
                   local; `country_daily_world_local` and `country_daily_world` over
                   `cli_world_local` and `cli_world`, the raw CLI over the world (ALL).
                   Each is compared with its raw backfill, and held to a share of it
                   local to local.

on two replay profiles: `volume` (every US day at the real API's volume, ~3,200 counties) and
`fixture` (the bundled data, light on most days). Every variant runs as a fresh process tree;
wall and CPU seconds, peak memory (PSS summed over the tree, sampled) and the API requests per
day are its own. Before a variant's time counts, what it wrote is read back from S3 and
checked: days, rows, sum of confirmed, county rows. Figures are printed as ratios to the
project's CLI, measured in the same run, because these machines are noisy, and written to
benchmarks/results.json.
"""

import argparse
import contextlib
import ctypes
import datetime as dt
import io
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pyarrow.compute as pc
import pyarrow.parquet as pq
import requests

ROOT = Path(__file__).resolve().parent.parent
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
FIRST_DAY, LAST_DAY = dt.date(2020, 1, 22), dt.date(2023, 3, 9)
BUCKET = "bench"
PROJECT = ("naive", "core", "cli", "cli_postgres", "cli_dagster_sqlite", "core_local", "cli_local")
# The CLI on each instance (cli_local: the project's, with the files in a local directory).
CLI_INSTANCES = ("cli", "cli_postgres", "cli_dagster_sqlite", "cli_local")
VOLUME_ONLY = ("naive", "cli_postgres", "cli_dagster_sqlite", "core_local", "cli_local")
# The reporting table over a raw backfill the run made: (its name, the raw variant, ISO_CODE).
# Held local to local to at most three quarters of its raw backfill's time. Over S3 each is
# measured and shown, not held: the table makes two requests a day of the S3 server (a GET and
# a PUT) to its raw backfill's one, and it is bound by CPU where the raw backfill waits on the
# API, so moto's ~2 ms of CPU a request, on the same two cores, falls on it alone: the same
# code measured 0.73 of its raw backfill in one run and 1.24 in another hours later
# (docs/performance.md).
REPORTING = (
    ("country_daily_local", "cli_local", None),
    ("country_daily", "cli", None),
    ("country_daily_world_local", "cli_world_local", "ALL"),
    ("country_daily_world", "cli_world", "ALL"),
)
REPORTING_SHARE = 0.75
PEERS = ("pyarrow_per_day", "pyarrow_dataset", "awswrangler", "dlt")  # S3 to S3
# The same writers into a local directory; pandas stands in for awswrangler, which refuses
# local paths (its to_parquet is pandas' with S3 around it). dlt is left to S3: at 5x the CLI
# there, it says nothing new. Like is compared with like: *_local only with *_local.
LOCAL_PEERS = ("pyarrow_per_day_local", "pyarrow_dataset_local", "pandas_local")
LOCAL_CLI_COST_MS = 4.0  # the CLI's wall time over the core's, per day, both local
POSTGRES_COST_MS = 6.0  # the same on PostgreSQL (S3), as the last run before batching measured
PROFILES = ("volume", "fixture")
MONTH = (dt.date(2021, 1, 1), dt.date(2021, 1, 31))  # the heaviest month: for memory growth
DEFAULT_OUT = ROOT / "benchmarks" / "results.json"
PERFORMANCE_DOC = ROOT / "docs" / "performance.md"
_BLOCK_START, _BLOCK_END = "<!-- bench:start -->\n", "<!-- bench:end -->"


def main(argv: list[str] | None = None) -> int:
    """Run the whole benchmark, or (internally) one project variant."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=100.0, help="replay API latency")
    parser.add_argument("--days", type=int, default=0, help="N days from --start (0: to the end)")
    parser.add_argument("--start", type=dt.date.fromisoformat, default=FIRST_DAY)
    parser.add_argument("--iso", default="USA")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--profile", action="append", choices=PROFILES, help="default: both")
    parser.add_argument("--skip", action="append", default=[], help="a variant not to run")
    parser.add_argument("--no-peers", action="store_true", help="the project's variants only")
    parser.add_argument(
        "--no-countries", action="store_true", help="no world and country-list variants"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--show", action="store_true", help="print --out's figures as Markdown tables; run nothing"
    )
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant
    args = parser.parse_args(argv)
    if args.show:
        sys.stdout.write(markdown(json.loads(args.out.read_text())))
        return 0
    last = LAST_DAY if not args.days else args.start + dt.timedelta(days=args.days - 1)
    first, last = args.start, min(last, LAST_DAY)
    if args.variant:
        VARIANTS[args.variant](args, first, last)
        return 0
    return orchestrate(args, first, last)


# --- the project's variants, each run as `bench.py --variant NAME` -------------------------


def naive(args: argparse.Namespace, first: dt.date, last: dt.date) -> None:
    """The design's Lambda loop, as plainly as it reads: one day after another."""
    import pandas as pd

    s3 = boto3.client("s3")
    api, prefix = os.environ["API_URL"], os.environ["PREFIX"]
    day = first
    while day <= last:
        params = {"date": str(day), "iso": args.iso}
        response = requests.get(f"{api}/reports", params=params, timeout=30)
        response.raise_for_status()
        records = response.json()["data"]
        if records:
            frame = pd.json_normalize(records)
            path = f"/tmp/covid_{day}.parquet"
            frame.to_parquet(path, compression="snappy")
            s3.upload_file(path, BUCKET, f"{prefix}/date={day}/data.parquet")
            os.remove(path)
        day += dt.timedelta(days=1)


def core(args: argparse.Namespace, first: dt.date, last: dt.date) -> None:
    """The Lambda handler, called as the runtime calls it, with its 15 minutes."""
    from covid_pipeline import lambda_handler  # its cold start counts: clients, settings

    deadline = time.monotonic() + 900

    class Context:
        function_name, aws_request_id = "bench", "bench"

        def get_remaining_time_in_millis(self) -> int:
            return int((deadline - time.monotonic()) * 1000)

    answer = lambda_handler.handler({"start_date": str(first), "end_date": str(last)}, Context())
    assert not answer["failed"] and not answer["remaining"], answer["counts"]


def core_local(args: argparse.Namespace, first: dt.date, last: dt.date) -> None:
    """The core as the Lambda handler calls it (`run_range`), into a local directory."""
    from covid_pipeline.core import config
    from covid_pipeline.core.engine.run import run_range

    settings = config.load_settings()
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    store = config.store(settings, lambda: None, settings.prefix)
    outcome = run_range(
        config.api_client(settings), store, settings.prefix, days, config.range_options(settings)
    )
    assert not outcome.failed and not outcome.unfinished, outcome.failed


VARIANTS = {"naive": naive, "core": core, "core_local": core_local}


def command_for(name: str, args: argparse.Namespace, first: dt.date, last: dt.date) -> list[str]:
    """How a variant is started: a project variant, the dagster CLI, or a peer."""
    if name.startswith("country_daily"):
        return [
            str(Path(sys.executable).with_name("dagster")), "asset", "materialize",
            "-m", "covid_pipeline.definitions", "--select", "covid_country_daily",
            "--partition-range", f"{first}...{last}",
        ]  # fmt: skip
    if name in CLI_INSTANCES:
        return [
            str(Path(sys.executable).with_name("dagster")), "asset", "materialize",
            "-m", "covid_pipeline.definitions", "--select", "covid_daily_reports",
            "--partition-range", f"{first}...{last}",
        ]  # fmt: skip
    if name in PEERS or name in LOCAL_PEERS:
        return [str(PEERS_PYTHON), str(ROOT / "benchmarks" / "peers.py"), name]
    return [
        sys.executable, str(Path(__file__).resolve()), "--variant", name,
        "--start", str(first), "--days", str((last - first).days + 1), "--iso", args.iso,
    ]  # fmt: skip


def instance_file(name: str) -> str:
    """The dagster.yaml of a CLI variant: one of the project's, or Dagster's own SQLite."""
    if name == "cli_postgres":
        return (ROOT / "dagster-instance.postgres.yaml").read_text()
    text = (ROOT / "dagster-instance.yaml").read_text()
    if name == "cli_dagster_sqlite":
        start, end = text.index("storage:\n"), text.index("\n\n", text.index("storage:\n"))
        text = (
            text[:start]
            + "storage:\n  sqlite:\n    base_dir:\n      env: DAGSTER_HOME"
            + text[end:]
        )
    return text


# --- running one variant, and what it costs -----------------------------------------------


def is_local(name: str) -> bool:
    """Whether a variant writes to a local directory (else to the S3 server)."""
    return name.endswith("_local")


def run_variant(command: list[str], env: dict[str, str], cwd: Path) -> dict[str, float]:
    """Run `command` to its end: wall and CPU seconds, and peak memory of its process tree.

    The CPU is the whole tree's, from rusage: the processes a variant leaves behind (the
    decoding workers' forkserver outlives the process that started it) are reaped here, so
    their time, and that of the workers they reaped, is counted.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with _orphans_reaped():
        started = time.perf_counter()
        process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        sampler = _PeakSampler(process.pid)
        output, _ = process.communicate()
        wall = time.perf_counter() - started
        peak = sampler.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed:\n{output[-5000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "peak_mem_mb": peak}


_PR_SET_CHILD_SUBREAPER = 36  # prctl(2), Linux
_ORPHANS_GRACE_S = 60  # a forkserver and its workers end within a second of their parent


@contextmanager
def _orphans_reaped() -> Iterator[None]:
    """Adopt the orphans of what starts inside, and wait for them to end on the way out.

    Without it an orphan goes to init, and its CPU, with that of the children it reaped, never
    reaches this process's RUSAGE_CHILDREN. Only inside: a server's daemon (pg_ctl's
    postmaster) started elsewhere still goes to init, as it always did.
    """
    ours = set(_children().get(os.getpid(), []))  # the servers': not a variant's
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SystemExit(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
    try:
        yield
        deadline = time.monotonic() + _ORPHANS_GRACE_S
        while orphans := set(_children().get(os.getpid(), [])) - ours:
            for pid in orphans:
                if os.waitpid(pid, os.WNOHANG)[0] == 0 and time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    raise SystemExit(f"a variant left process {pid} running; it was killed")
            time.sleep(0.02)
    finally:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


class _PeakSampler:
    """Samples a process tree every 250 ms for the peak of its PSS, summed over the tree.

    PSS, not RSS: a worker process shares pyarrow's libraries with its parent, and RSS would
    count them once per process. Reading PSS is not free (the kernel walks each process's
    page tables), and it runs on the variant's cores: sampled more often, it slowed what it
    measured (docs/performance.md).
    """

    INTERVAL_S = 0.25

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_kib = pid, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> float:
        """The peak PSS in MB."""
        self._done.set()
        self._thread.join()
        return self.peak_kib / 1024

    def _run(self) -> None:
        while not self._done.wait(self.INTERVAL_S):
            tree = _tree(self.pid, _children())
            self.peak_kib = max(self.peak_kib, sum(_pss_kib(p) for p in tree))


def _children() -> dict[int, list[int]]:
    """Each running process's children, from one scan of /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    return children


def _tree(root: int, children: dict[int, list[int]]) -> list[int]:
    """`root` and all its descendants."""
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# --- what a variant wrote, read back --------------------------------------------------------


def expected_totals(
    profile: str, iso: str, first: dt.date, last: dt.date, by_country: bool = False
) -> dict[str, int]:
    """Days with data, rows, sum of confirmed and county rows, from the replay's own data.

    `iso` is ISO_CODE's value: one code, a list, or ALL (the replay's unfiltered query).
    `by_country`: the country-day table's figures instead, a row per code per day with data.
    """
    from covid_pipeline_replay import jhu, volume

    from covid_pipeline.core.source.countries import Countries

    reports = volume.reports if profile == "volume" else jhu.reports
    queries = [query or "" for query in Countries.parse(iso).queries]
    totals = {"days": 0, "rows": 0, "confirmed": 0, "county_rows": 0}
    day = first
    while day <= last:
        records = [record for query in queries for record in reports(query, day)]
        totals["days"] += bool(records)
        totals["confirmed"] += sum(r["confirmed"] or 0 for r in records)
        if by_country:
            totals["rows"] += len({record["region"]["iso"] for record in records})
        else:
            totals["rows"] += len(records)
            totals["county_rows"] += sum(len(r["region"]["cities"] or ()) for r in records)
        day += dt.timedelta(days=1)
    return totals


def written_totals(s3: Any, prefix: str, lake: Path | None = None) -> dict[str, int]:
    """The same figures from every Parquet file under `prefix`, whatever layout wrote them.

    In the bucket, or under the local directory `lake`. Files keep the API's shape
    (`region.cities`), the project's (`cities`), or dlt's (counties in a child table of their
    own); the day is a column or the file's date= folder.
    """
    if lake is not None:
        keys = [str(path.relative_to(lake)) for path in sorted((lake / prefix).rglob("*.parquet"))]
    else:
        keys = [
            item["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=BUCKET, Prefix=f"{prefix}/"
            )
            for item in page.get("Contents", [])
            if item["Key"].endswith(".parquet") and "/_dlt_" not in item["Key"]  # dlt's own
        ]

    def totals_of(key: str) -> tuple[set[str], int, int, int]:
        if lake is not None:
            table = pq.read_table(lake / key)
        else:
            table = pq.read_table(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))
        if "__cities/" in key:  # dlt's child table: one row per county
            return set(), 0, 0, table.num_rows
        names = table.column_names
        day_column = next((name for name in ("report_date", "date") if name in names), None)
        if day_column:
            days = {str(day) for day in pc.unique(table[day_column]).to_pylist()}
        else:
            days = {part[5:] for part in key.split("/") if part.startswith("date=")}
        if "cities" in names or "region.cities" in names:  # the project's; pd.json_normalize's
            cities = table["cities" if "cities" in names else "region.cities"]
        elif "region" in names:  # the API's shape, kept by the pyarrow and pandas peers
            cities = pc.struct_field(table["region"], "cities")
        else:
            cities = None
        counties = 0 if cities is None else int(pc.sum(pc.list_value_length(cities)).as_py() or 0)
        confirmed = int(pc.sum(table["confirmed"]).as_py() or 0)
        return days, table.num_rows, confirmed, counties

    days: set[str] = set()
    totals = {"days": 0, "rows": 0, "confirmed": 0, "county_rows": 0}
    with ThreadPoolExecutor(16) as pool:
        for file_days, rows, confirmed, counties in pool.map(totals_of, keys):
            days |= file_days
            totals["rows"] += rows
            totals["confirmed"] += confirmed
            totals["county_rows"] += counties
    totals["days"] = len(days)
    return totals


# --- the orchestrator -----------------------------------------------------------------------


def orchestrate(args: argparse.Namespace, first: dt.date, last: dt.date) -> int:
    """For each profile: start the servers, run and check every variant, print and save."""
    peers = [] if args.no_peers else [p for p in (*PEERS, *LOCAL_PEERS) if p not in args.skip]
    if peers:
        _say("setting up the peers' virtualenv (.venv-peers), if needed")
        subprocess.run(["make", "-s", "-C", str(ROOT), ".venv-peers/.installed"], check=True)
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"first_day": str(first), "last_day": str(last), "iso": args.iso,
                     "latency_ms": args.latency_ms, "concurrency": args.concurrency},
        "profiles": {},
    }  # fmt: skip
    for profile in args.profile or PROFILES:
        variants = [v for v in PROJECT if v not in args.skip]
        if profile == "volume" and "naive" in variants:
            variants.remove("naive")  # minutes at this volume, and nothing new to learn
        own_peers = peers
        if profile != "volume":  # their targets are on the real API's volume
            variants = [v for v in variants if v == "naive" or v not in VOLUME_ONLY]
            own_peers = [p for p in peers if p not in LOCAL_PEERS]
        report["profiles"][profile] = run_profile(args, profile, first, last, variants + own_peers)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    _say(f"\nwrote {args.out}")
    if args.out == DEFAULT_OUT:  # the figures the docs show are this run's, never retyped
        text = PERFORMANCE_DOC.read_text()
        start, end = text.index(_BLOCK_START) + len(_BLOCK_START), text.index(_BLOCK_END)
        PERFORMANCE_DOC.write_text(text[:start] + markdown(report) + text[end:])
        _say(f"wrote its figures into {PERFORMANCE_DOC}")
    return 0


def run_profile(
    args: argparse.Namespace, profile: str, first: dt.date, last: dt.date, variants: list[str]
) -> dict[str, Any]:
    """Start the servers for `profile`, then run and check each variant in turn."""
    days = (last - first).days + 1
    floor = days * args.latency_ms / 1000 / args.concurrency
    _say(
        f"\n== profile {profile}: {days} days of {args.iso}, replay latency {args.latency_ms:g} "
        f"ms, {args.concurrency} in flight; request floor {floor:.2f} s"
    )
    expected = expected_totals(profile, args.iso, first, last)
    results: dict[str, dict[str, Any]] = {}
    servers = _servers(args.latency_ms, profile)
    with servers as (api_url, s3_url), tempfile.TemporaryDirectory() as work:
        env = _environment(args, api_url, s3_url, first, last)
        s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")  # fmt: skip
        s3.create_bucket(Bucket=BUCKET)
        # Every answer the variants will ask for, once, so that the replay serves them from its
        # caches: building a world day or another country's day is the stand-in's work, not
        # the pipeline's, and must not be what a variant's time measures.
        countries = profile == "volume" and "core" in variants and not args.no_countries
        month = MONTH if MONTH[0] >= first and MONTH[1] <= last else (first, last)
        warm = [(args.iso, (first, last))]
        warm += [("CAN,MEX,USA", (first, last)), ("ALL", month)] if countries else []
        reporting = reporting_variants(args) if profile == "volume" else []
        warm += [("ALL", (first, last))] if any(iso == "ALL" for _, _, iso in reporting) else []
        for iso, (start, end) in warm:
            _say(f"warming the replay API's caches for {iso} (not measured)")
            run_variant(
                command_for("core", args, start, end),
                env | {"PREFIX": f"warmup-{iso.replace(',', '_')}", "ISO_CODE": iso},
                ROOT,
            )
        for name in variants:
            # PostgreSQL runs for its one variant only: left running, its work after a
            # backfill (checkpoints, autovacuum) can fall on the variants measured next
            # (docs/performance.md, "The core's CPU, second pass").
            postgres = _postgres() if name == "cli_postgres" else contextlib.nullcontext({})
            with postgres as pg:
                results[name] = measure(
                    name, args, first, last, env | pg, Path(work), api_url, s3, expected
                )
            if reporting:  # a table right after the raw backfill it is held to
                measure_reporting(
                    args, first, last, env, Path(work), api_url, s3, profile, results, after=name
                )
        if reporting:  # the tables over raw backfills of their own (the world's)
            measure_reporting(args, first, last, env, Path(work), api_url, s3, profile, results)
        if "cli" in results and (first, last) != MONTH and MONTH[0] >= first and MONTH[1] <= last:
            # With the decoding processes the full range started (a fixed cost, not growth),
            # so that the two peaks differ by what accumulates with the range, if anything.
            from covid_pipeline.core.engine.workers import workers_for

            same = env | {"CPU_WORKERS": str(workers_for(None, days))}
            _say(f"running cli over {MONTH[0]}..{MONTH[1]}, for its memory on a month ...")
            results["cli_month"] = measure("cli", args, *MONTH, same, Path(work), api_url, s3, None)
        if countries:
            # Many countries in one lake: the world in one request a day, against USA alone
            # over the same month; and three countries, one request per (day, country).
            for label, iso, (start, end) in (
                ("core_usa_month", "USA", month),
                ("core_world_month", "ALL", month),
                ("core_3_countries", "CAN,MEX,USA", (first, last)),
            ):
                expected_set = expected_totals(profile, iso, start, end)
                results[label] = measure(
                    "core", args, start, end, env | {"ISO_CODE": iso}, Path(work), api_url, s3,
                    expected_set, label=label,
                )  # fmt: skip
    return _summarise(profile, floor, results)


def measure(
    name: str, args: argparse.Namespace, first: dt.date, last: dt.date, env: dict[str, str],
    work: Path, api_url: str, s3: Any, expected: dict[str, int] | None, label: str = "",
) -> dict[str, Any]:  # fmt: skip
    """Run one variant on a fresh replay counter; check what it wrote against `expected`."""
    prefix = f"{label or name}-{first}-{last}"
    home = work / f"home-{prefix}"
    home.mkdir()
    if "RAW_PREFIX" in env:  # a reporting variant: it reads the raw days there, writes here
        env = env | {"COUNTRY_DAILY_PREFIX": prefix}
        prefix_env = {"PREFIX": env["RAW_PREFIX"], "PEER_PREFIX": prefix}
    else:
        prefix_env = {"PREFIX": prefix, "PEER_PREFIX": prefix}
    if name in CLI_INSTANCES or name.startswith("country_daily"):  # the project's instance
        (home / "dagster.yaml").write_text(instance_file(name))
    lake = work / "lake" if is_local(name) else None  # like with like: local beside local
    if lake is not None:
        env = env | {"BUCKET_NAME": "", "WAREHOUSE_DIR": str(lake), "PEER_DIR": str(lake)}
    if (home / "dagster.yaml").exists():
        # The instance's tables exist before a deployment's backfills do: created here, untimed
        # (a first run ever would spend about a second more creating them).
        subprocess.run(
            [str(Path(sys.executable).with_name("dagster")), "instance", "migrate"],
            env=env | {"DAGSTER_HOME": str(home)}, cwd=home, check=True, capture_output=True,
        )  # fmt: skip
    requests.post(f"{api_url[:-4]}/_replay/reset", timeout=10).raise_for_status()
    _say(f"running {label or name} ({env['ISO_CODE']}, {first}..{last}) ...")
    result: dict[str, Any] = run_variant(
        command_for(name, args, first, last),
        env | prefix_env | {"DAGSTER_HOME": str(home), "DLT_PIPELINES_DIR": str(home),
                            "FIRST_DAY": str(first), "LAST_DAY": str(last)},
        home,
    )  # fmt: skip
    stats = requests.get(f"{api_url[:-4]}/_replay/stats", timeout=10).json()
    result["destination"] = "local" if lake is not None else "s3"
    result["api_requests"] = stats["requests"]
    result["max_requests_per_day"] = stats["max_requests_per_day"]
    if expected is not None:
        result["written"] = written_totals(s3, prefix, lake)
        result["correct"] = result["written"] == expected
        if not result["correct"]:
            _say(f"  {name} wrote {result['written']}, expected {expected}: its time won't count")
    return result


def measure_reporting(
    args: argparse.Namespace, first: dt.date, last: dt.date, env: dict[str, str], work: Path,
    api_url: str, s3: Any, profile: str, results: dict[str, dict[str, Any]],
    after: str | None = None,
) -> None:  # fmt: skip
    """The country-day table over the raw days a CLI variant wrote, where it wrote them.

    Each table is measured right after its raw backfill (`after`: only the tables over that
    one), so that both find the machine alike: measured after the peers instead, whose
    gigabytes push the raw files and the project's modules out of the page cache, the table
    ran cold while its yardstick had run warm (docs/performance.md, "A third pass").
    """
    for name, raw, iso in reporting_variants(args):
        if name in results or (after is not None and raw != after):
            continue
        own = env | ({"ISO_CODE": iso} if iso else {})
        if raw not in results:  # the raw backfill it reads, by the same CLI on the same instance
            expected_raw = expected_totals(profile, own["ISO_CODE"], first, last)
            cli = "cli_local" if is_local(raw) else "cli"
            results[raw] = measure(
                cli, args, first, last, own, work, api_url, s3, expected_raw, label=raw
            )
        expected = expected_totals(profile, own["ISO_CODE"], first, last, by_country=True)
        raw_prefix = f"{raw}-{first}-{last}"
        results[name] = measure(
            name, args, first, last, own | {"RAW_PREFIX": raw_prefix}, work, api_url, s3, expected
        )


def reporting_variants(args: argparse.Namespace) -> list[tuple[str, str, str | None]]:
    """The REPORTING variants this run measures: neither they nor their raw run skipped."""
    return [
        (name, raw, iso)
        for name, raw, iso in REPORTING
        if name not in args.skip and raw not in args.skip and not (iso and args.no_countries)
    ]


def _summarise(profile: str, floor: float, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    _say(f"\n{'variant':<27}{'wall s':>9}{'CPU s':>8}{'peak MB':>9}{'req/day':>9}"
         f"{'correct':>9}{'wall / cli':>12}")  # fmt: skip
    for name, r in results.items():
        if name == "cli_month":
            continue
        per_day = r["api_requests"] / max(r["written"]["days"], 1) if "written" in r else 0
        cli = _cli_for(name, results)
        ratio = f"{r['wall_s'] / cli:.2f}" if cli else "-"
        _say(f"{name:<27}{r['wall_s']:>9.1f}{r['cpu_s']:>8.1f}{r['peak_mem_mb']:>9.0f}"
             f"{per_day:>9.2f}{'yes' if r.get('correct') else 'NO':>9}{ratio:>12}")  # fmt: skip
    targets = _targets(profile, floor, results)
    _say("")
    for target, (value, met) in targets.items():
        _say(f"  {'met ' if met else 'MISS'}  {target}: {value}")
    if "core" in results:
        _say(f"  core / request floor: {results['core']['wall_s'] / floor:.2f}")
    return {"request_floor_s": floor, "results": results,
            "targets": {k: {"value": v, "met": m} for k, (v, m) in targets.items()}}  # fmt: skip


def _cli_for(name: str, results: dict[str, dict[str, Any]]) -> float | None:
    """The wall time of the CLI writing where `name` writes: cli_local, or cli (S3)."""
    return results.get("cli_local" if is_local(name) else "cli", {}).get("wall_s")


def markdown(report: dict[str, Any]) -> str:
    """A saved run's figures as Markdown: a table and the targets per profile."""
    settings = report["settings"]
    lines = [
        f"Measured {report['when'][:10]} on {report['machine']['cpus']} CPUs, Python "
        f"{report['machine']['python']}: {settings['iso']} {settings['first_day']}.."
        f"{settings['last_day']}, replay latency {settings['latency_ms']:g} ms, "
        f"{settings['concurrency']} requests in flight.",
    ]
    for profile, summary in report["profiles"].items():
        results = summary["results"]
        lines += [
            "",
            f"**{profile}** (request floor {summary['request_floor_s']:.2f} s; wall / cli is "
            "against the CLI writing to the same place: cli_local for the *_local variants):",
            "",
            "| variant | wall s | CPU s | peak MB | requests/day | correct | wall / cli |",
            "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
        ]
        for name, r in results.items():
            if name == "cli_month":
                continue
            per_day = r["api_requests"] / max(r["written"]["days"], 1)
            cli = _cli_for(name, results)
            ratio = f"{r['wall_s'] / cli:.2f}" if cli else "-"
            lines.append(
                f"| {name} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_mem_mb']:.0f} | "
                f"{per_day:.2f} | {'yes' if r.get('correct') else 'NO'} | {ratio} |"
            )
        lines.append("")
        lines += [
            f"- {'met' if t['met'] else 'MISSED'}: {name}: {t['value']}"
            for name, t in summary["targets"].items()
        ]
    return "\n".join(lines) + "\n"


def _targets(
    profile: str, floor: float, results: dict[str, dict[str, Any]]
) -> dict[str, tuple[str, bool]]:
    """The issue's numbers, each with the measured value and whether it was met.

    Against the peers on the volume profile (the real API's volume); against the naive loop on
    the light fixture; one request per day, and memory growth, everywhere.
    """
    wall = {name: r["wall_s"] for name, r in results.items() if r.get("correct")}
    volume = profile == "volume"
    peers = {name: w for name, w in wall.items() if name in PEERS and volume}
    local_peers = {name: w for name, w in wall.items() if name in LOCAL_PEERS and volume}
    targets: dict[str, tuple[str, bool]] = {}
    for name in ("core", "cli", "naive", "core_local", "cli_local"):
        if name in results:
            r = results[name]
            one = r["max_requests_per_day"] == 1 and r["api_requests"] == r["written"]["days"]
            targets[f"{name}: one API request per day"] = (
                f"{r['api_requests']} requests, {r['written']['days']} days",
                one,
            )
    # Like with like: the project's local variants against the local peers, S3 against S3.
    for name, against, where in (
        ("cli_local", local_peers, "local"),
        ("cli", peers, "S3 to S3"),
        ("cli_postgres", peers, "S3 to S3"),
    ):
        if against and name in wall:
            fastest = min(against, key=against.get)
            ratio = wall[name] / against[fastest]
            value = f"{ratio:.2f} ({fastest})"
            targets[f"{name} <= 0.8 x the fastest peer, {where}"] = (value, ratio <= 0.8)
    if "core_local" in wall:
        ratio = wall["core_local"] / floor
        targets["core_local <= 1.5 x the request floor"] = (
            f"{wall['core_local']:.1f} / {floor:.2f} s = {ratio:.2f}",
            ratio <= 1.5,
        )
    for name, core, limit, where in (
        ("cli_local", "core_local", LOCAL_CLI_COST_MS, "local"),
        ("cli_postgres", "core", POSTGRES_COST_MS, "S3, on PostgreSQL"),
    ):
        days = results[name]["written"]["days"] if name in wall else 0  # wall: read back, correct
        if days and core in wall:
            cost = (wall[name] - wall[core]) / days * 1000
            targets[f"{name}'s cost over {core} <= {limit:g} ms a day, {where}"] = (
                f"({wall[name]:.1f} - {wall[core]:.1f} s) / {days} days = {cost:.1f} ms",
                cost <= limit,
            )
    if "awswrangler" in peers and "cli" in wall:
        targets["cli < awswrangler, S3 to S3"] = (
            f"{wall['cli']:.1f} / {peers['awswrangler']:.1f} s",
            wall["cli"] < peers["awswrangler"],
        )
    if peers and "core" in wall:
        fastest = min(peers, key=peers.get)
        ratio = wall["core"] / peers[fastest]
        targets["core <= 0.67 x the fastest peer, S3 to S3"] = (
            f"{ratio:.2f} ({fastest})",
            ratio <= 0.67,
        )
    if "cli_dagster_sqlite" in wall and "cli" in wall:  # what keeps instance_storage.py
        ratio = wall["cli"] / wall["cli_dagster_sqlite"]
        targets["cli on the project's SQLite storage < 1.0 x on Dagster's own"] = (
            f"{wall['cli']:.1f} / {wall['cli_dagster_sqlite']:.1f} s = {ratio:.2f}",
            ratio < 1.0,
        )
    if "cli_month" in results and "cli" in results:
        full, month = results["cli"]["peak_mem_mb"], results["cli_month"]["peak_mem_mb"]
        targets["cli memory, history / month <= 1.15"] = (
            f"{full:.0f} / {month:.0f} MB = {full / month:.2f}",
            full / month <= 1.15,
        )
    if "core_world_month" in results and "core_usa_month" in results:
        world, usa = results["core_world_month"], results["core_usa_month"]
        days = world["written"]["days"]
        one = world["max_requests_per_day"] == 1 and world["api_requests"] == days
        targets["world month (ALL): one request per day"] = (f"{world['api_requests']}", one)
        ratio = world["wall_s"] / usa["wall_s"]
        targets["world month <= 2 x USA's month"] = (
            f"{world['wall_s']:.1f} / {usa['wall_s']:.1f} s = {ratio:.2f}",
            ratio <= 2 and bool(world.get("correct")),
        )
    if "core_3_countries" in results:
        three = results["core_3_countries"]
        days = three["written"]["days"]
        targets["three countries: one request per (day, country)"] = (
            f"{three['api_requests']} requests, {days} days",
            three["api_requests"] == 3 * days and three["max_requests_per_day"] == 1,
        )
    for name, raw, _iso in REPORTING:
        if name in results and raw in results and is_local(name):  # held like with like
            ratio = results[name]["wall_s"] / results[raw]["wall_s"]
            targets[f"{name} <= {REPORTING_SHARE:g} x its raw backfill ({raw}), local"] = (
                f"{results[name]['wall_s']:.1f} / {results[raw]['wall_s']:.1f} s = {ratio:.2f}",
                ratio <= REPORTING_SHARE and bool(results[name].get("correct")),
            )
    if "naive" in wall:
        for name, needed in (("cli", 5.0), ("core", 12.0)):
            if name in wall:
                ratio = wall["naive"] / wall[name]
                targets[f"naive / {name} >= {needed:g}"] = (f"{ratio:.1f}", ratio >= needed)
    return targets  # fmt: skip


def _environment(
    args: argparse.Namespace, api_url: str, s3_url: str, first: dt.date, last: dt.date
) -> dict[str, str]:
    return {
        **os.environ,
        "API_URL": api_url,
        "AWS_ENDPOINT_URL": s3_url,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",  # for pyarrow's own S3 uploads
        "BUCKET_NAME": BUCKET,
        "ISO_CODE": args.iso,
        "FETCH_CONCURRENCY": str(args.concurrency),
        "CATALOG_MODE": "local",  # the catalog is not measured here
        "PYTHONPATH": str(ROOT),
    }


@contextmanager
def _postgres() -> Iterator[dict[str, str]]:
    """A local PostgreSQL with one database: the DAGSTER_PG_* variables of the production file.

    With the two variables production runs with (README); the embedded variants run as
    `make dev` does, without them.
    """
    sys.path.insert(0, str(ROOT))
    from covid_pipeline_tests.support.postgres_server import PRODUCTION_ENV, PostgresServer

    server = PostgresServer(None, _free_port()).start()
    try:
        server.create_database("bench")
        yield server.environment("bench") | PRODUCTION_ENV
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@contextmanager
def _servers(latency_ms: float, profile: str) -> Iterator[tuple[str, str]]:
    """The replay API and moto's S3 server, each in a process of its own on 127.0.0.1."""
    replay = subprocess.Popen(
        [sys.executable, "-m", "covid_pipeline_replay", "--port", "0",
         "--latency-ms", str(latency_ms), "--profile", profile],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    port = _free_port()
    moto = str(Path(sys.executable).with_name("moto_server"))  # the pinned one, not the PATH's
    s3_server = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert replay.stdout is not None
        api_url = replay.stdout.readline().strip()
        s3_url = f"http://127.0.0.1:{port}"
        _wait_for(s3_url)
        yield api_url, s3_url
    finally:
        for process in (replay, s3_server):
            process.terminate()
            process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up in {timeout_s:.0f}s")


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
