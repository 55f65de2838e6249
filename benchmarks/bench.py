"""Backfill benchmark: the design's naive loop against the project's core and its Dagster CLI.

One command (`make bench`, or `python benchmarks/bench.py`) starts the replay API with a fixed
latency per request and an S3 server (moto), both on 127.0.0.1 in processes of their own, then
measures over the same days, against the same servers, in the same run:

  (a) baseline: the naive loop of the design, written plainly here: for each day in turn,
      GET, pd.json_normalize, to_parquet into /tmp, upload;
  (b) core: the project's range backfill, run by calling the Lambda handler;
  (c) cli: `dagster asset materialize --partition-range` in a subprocess.

Each variant runs in a fresh process, so its peak RSS is its own. Figures are printed as
ratios against (a) and against the request floor (days x latency / concurrency), because these
machines are noisy, and written to a JSON file.
"""

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
import requests

ROOT = Path(__file__).resolve().parent.parent
FIRST_DAY, LAST_DAY = dt.date(2020, 1, 22), dt.date(2023, 3, 9)
BUCKET = "bench"


def main(argv: list[str] | None = None) -> int:
    """Run the whole benchmark, or (internally) one variant."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=100.0, help="replay API latency")
    parser.add_argument("--days", type=int, default=0, help="N days from --start (0: to the end)")
    parser.add_argument("--start", type=dt.date.fromisoformat, default=FIRST_DAY)
    parser.add_argument("--iso", default="USA")
    parser.add_argument("--concurrency", type=int, default=16, help="FETCH_CONCURRENCY")
    parser.add_argument("--skip", action="append", default=[], help="naive, core or cli")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.json")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant
    args = parser.parse_args(argv)
    last = LAST_DAY if not args.days else args.start + dt.timedelta(days=args.days - 1)
    if args.variant:
        result = VARIANTS[args.variant](args, args.start, min(last, LAST_DAY))
        result["peak_rss_mb"] = _peak_rss_mb()
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    return orchestrate(args, args.start, min(last, LAST_DAY))


# --- the variants, each in its own process ---------------------------------------------------


def naive(args: argparse.Namespace, first: dt.date, last: dt.date) -> dict[str, Any]:
    """(a) The design's Lambda loop, as plainly as it reads: one day after another."""
    import pandas as pd

    s3 = boto3.client("s3")
    api, iso = os.environ["API_URL"], args.iso
    started = time.perf_counter()
    day = first
    while day <= last:
        response = requests.get(f"{api}/reports", params={"date": str(day), "iso": iso}, timeout=30)
        response.raise_for_status()
        records = response.json()["data"]
        if records:
            frame = pd.json_normalize(records)
            path = f"/tmp/covid_{day}.parquet"
            frame.to_parquet(path, compression="snappy")
            s3.upload_file(path, BUCKET, f"bench/naive/date={day}/data.parquet")
            os.remove(path)
        day += dt.timedelta(days=1)
    return {"wall_s": time.perf_counter() - started}


def core(args: argparse.Namespace, first: dt.date, last: dt.date) -> dict[str, Any]:
    """(b) The Lambda handler, called as the runtime calls it, with its 15 minutes."""
    os.environ.update(PREFIX=os.environ.get("BENCH_PREFIX", "bench/core"))
    started = time.perf_counter()
    from covid_pipeline import lambda_handler  # its cold start counts: clients, settings

    deadline = time.monotonic() + 900

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return int((deadline - time.monotonic()) * 1000)

    answer = lambda_handler.handler({"start_date": str(first), "end_date": str(last)}, Context())
    assert not answer["failed"] and not answer["remaining"], answer["counts"]
    return {"wall_s": time.perf_counter() - started}


def cli(args: argparse.Namespace, first: dt.date, last: dt.date) -> dict[str, Any]:
    """(c) `dagster asset materialize --partition-range`, as a user types it."""
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "PREFIX": "bench/cli", "DAGSTER_HOME": home}
        command = [
            str(Path(sys.executable).with_name("dagster")), "asset", "materialize",
            "-m", "covid_pipeline.definitions", "--select", "covid_daily_reports",
            "--partition-range", f"{first}...{last}",
        ]  # fmt: skip
        started = time.perf_counter()
        result = subprocess.run(command, env=env, cwd=home, capture_output=True, text=True)
        wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"dagster asset materialize failed:\n{result.stderr[-3000:]}")
    return {"wall_s": wall}


VARIANTS = {"naive": naive, "core": core, "cli": cli}


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux; children covers the dagster CLI and its step process.
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


# --- the orchestrator -------------------------------------------------------------------------


def orchestrate(args: argparse.Namespace, first: dt.date, last: dt.date) -> int:
    """Start the servers, run each variant against them, print and save the figures."""
    days = (last - first).days + 1
    with _servers(args.latency_ms) as (api_url, s3_url):
        env = {
            **os.environ,
            "API_URL": api_url,
            "AWS_ENDPOINT_URL": s3_url,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "BUCKET_NAME": BUCKET,
            "ISO_CODE": args.iso,
            "FETCH_CONCURRENCY": str(args.concurrency),
            "CATALOG_MODE": "local",  # the catalog is not measured here
        }
        boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1",
                     aws_access_key_id="bench", aws_secret_access_key="bench",
                     ).create_bucket(Bucket=BUCKET)  # fmt: skip
        _say(f"warming the replay API's caches over {days} days (not measured)")
        _run_variant("core", args, env | {"BENCH_PREFIX": "bench/warmup"})
        results: dict[str, dict[str, Any]] = {}
        for name in ("naive", "core", "cli"):
            if name in args.skip:
                continue
            requests.post(f"{api_url[:-4]}/_replay/reset", timeout=10).raise_for_status()
            _say(f"running ({'abc'[list(VARIANTS).index(name)]}) {name} ...")
            result = _run_variant(name, args, env)
            stats = requests.get(f"{api_url[:-4]}/_replay/stats", timeout=10).json()
            result["api_requests"] = stats["requests"]
            result["max_requests_per_day"] = stats["max_requests_per_day"]
            result["objects"] = _count_objects(s3_url, f"bench/{name}/")
            result["days_per_s"] = days / result["wall_s"]
            results[name] = result
        if "core" in results and days > 31:
            # The month with the largest days (US counties), so that the comparison shows
            # accumulation across days, not the difference between small days and large ones.
            _say("running (b) core over 2021-01 (31 days), for its peak RSS ...")
            short = argparse.Namespace(**{**vars(args), "days": 31, "start": dt.date(2021, 1, 1)})
            results["core_31_days"] = _run_variant(
                "core", short, env | {"BENCH_PREFIX": "bench/c31"}
            )
    report = _report(args, days, results)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    _say(f"\nwrote {args.out}")
    return 0


def _run_variant(name: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--variant", name,
        "--start", str(args.start), "--days", str(args.days),
        "--iso", args.iso, "--concurrency", str(args.concurrency),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(
            f"variant {name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _report(args: argparse.Namespace, days: int, results: dict[str, dict[str, Any]]) -> dict:
    floor = days * args.latency_ms / 1000 / args.concurrency
    rows = [
        ("(a) naive loop", results.get("naive")),
        ("(b) core (Lambda handler)", results.get("core")),
        ("(c) dagster asset materialize", results.get("cli")),
    ]
    _say(f"\n{days} days of {args.iso}, replay latency {args.latency_ms:g} ms, "
         f"FETCH_CONCURRENCY {args.concurrency}; request floor {floor:.2f} s")  # fmt: skip
    header = f"{'variant':<32}{'wall s':>9}{'days/s':>9}{'peak RSS MB':>13}"
    _say(f"{header}{'requests':>10}{'objects':>9}")
    for label, result in rows:
        if result:
            _say(
                f"{label:<32}{result['wall_s']:>9.2f}{result['days_per_s']:>9.1f}"
                f"{result['peak_rss_mb']:>13.0f}{result['api_requests']:>10}{result['objects']:>9}"
            )
    ratios: dict[str, float] = {}
    naive_s = results.get("naive", {}).get("wall_s")
    if naive_s and "core" in results:
        ratios["a_over_b"] = naive_s / results["core"]["wall_s"]
    if naive_s and "cli" in results:
        ratios["a_over_c"] = naive_s / results["cli"]["wall_s"]
    if "core" in results and floor:
        ratios["b_over_floor"] = results["core"]["wall_s"] / floor
    if "core" in results and "cli" in results:
        ratios["dagster_ms_per_day"] = (
            (results["cli"]["wall_s"] - results["core"]["wall_s"]) / days * 1000
        )
    if "core_31_days" in results and "core" in results:
        ratios["rss_full_over_31_days"] = (
            results["core"]["peak_rss_mb"] / results["core_31_days"]["peak_rss_mb"]
        )
    _say("")
    for name, value in ratios.items():
        _say(f"{name:<24}{value:>8.2f}")
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "days": days,
            "iso": args.iso,
            "latency_ms": args.latency_ms,
            "concurrency": args.concurrency,
            "request_floor_s": floor,
        },
        "results": results,
        "ratios": ratios,
    }


def _count_objects(s3_url: str, prefix: str) -> int:
    s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1",
                      aws_access_key_id="bench", aws_secret_access_key="bench")  # fmt: skip
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sum(len(page.get("Contents", [])) for page in pages)


class _servers:
    """The replay API and moto's S3 server, each in a process of its own on 127.0.0.1."""

    def __init__(self, latency_ms: float) -> None:
        self.latency_ms = latency_ms
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> tuple[str, str]:
        replay = subprocess.Popen(
            [sys.executable, "-m", "covid_pipeline.replay", "--port", "0",
             "--latency-ms", str(self.latency_ms)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.processes.append(replay)
        assert replay.stdout is not None
        api_url = replay.stdout.readline().strip()
        port = _free_port()
        moto = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
        self.processes.append(
            subprocess.Popen(
                [moto, "-H", "127.0.0.1", "-p", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        s3_url = f"http://127.0.0.1:{port}"
        _wait_for(s3_url)
        return api_url, s3_url

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
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
