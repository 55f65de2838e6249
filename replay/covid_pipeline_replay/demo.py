"""The offline demo: replay API -> `dg launch` -> ./warehouse -> SQL.

`python -m covid_pipeline_replay.demo` starts the replay API (real JHU CSSE data) on a free port,
backfills a month for one country, catalogs it and builds the country-day table and its chart,
with the same CLI command a user would type, then prints the files it wrote and answers a
question from the country-day table with SQL. Runs are recorded in ./.dagster_home, so
`make dev` shows them, and the chart, in the UI.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import covid_pipeline
from covid_pipeline.cli import format_table
from covid_pipeline.core.catalog import duckdb_catalog
from covid_pipeline.core.config import load_settings
from covid_pipeline.core.dates import day_range, parse_day
from covid_pipeline.core.lake import day_files, layout, stores
from covid_pipeline_replay.server import ReplayServer

# Every asset: the raw days, their catalog, the country-day table, its catalog and its chart.
ASSETS = (
    "covid_daily_reports",
    "covid_catalog_table",
    "covid_country_daily",
    "covid_country_daily_table",
    "covid_country_daily_summary",
)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m covid_pipeline_replay.demo", description=__doc__
    )
    parser.add_argument("--start", default="2020-04-01", help="first day (YYYY-MM-DD)")
    parser.add_argument("--end", default="2020-04-30", help="last day (YYYY-MM-DD)")
    parser.add_argument("--iso", default="USA", help="a region code (USA), a list, or ALL")
    args = parser.parse_args(argv)
    try:
        days = day_range(parse_day(args.start, "--start"), parse_day(args.end, "--end"))
    except ValueError as error:
        parser.error(str(error))

    home = Path(os.environ.get("DAGSTER_HOME") or ".dagster_home").absolute()
    home.mkdir(parents=True, exist_ok=True)
    with ReplayServer() as replay:
        env = {
            **os.environ,
            "API_URL": replay.url,
            "ISO_CODE": args.iso,
            "BUCKET_NAME": "",  # the demo always writes to the local warehouse
            "CATALOG_MODE": "local",
            "DAGSTER_HOME": str(home),
            "VIRTUAL_ENV": sys.prefix,  # the project's venv, as `dg` expects it activated
        }
        settings = load_settings(env)
        _say(f"Replay API (JHU CSSE data, CC BY 4.0) at {replay.url}")
        _say(f"Backfilling {settings.iso_code} {days[0]}..{days[-1]} into {settings.storage_root}")
        command = [
            str(Path(sys.executable).with_name("dg")), "launch",
            "--assets", ",".join(ASSETS),
            "--partition-range", f"{days[0]}...{days[-1]}",
            # The project (a dg project: [tool.dg]), wherever the demo is run from.
            "--target-path", str(Path(covid_pipeline.__file__).resolve().parents[1]),
        ]  # fmt: skip
        _say("$ " + " ".join(["dg", *command[1:-2]]))
        if _run_showing_progress(command, env) != 0:
            _say("The backfill failed; the log above says which days and why.")
            return 1

    store = stores.LocalStore(settings.warehouse_dir)
    _say(f"\n{'day':<12}{'rows':>6}{'bytes':>10}  file")
    written = 0
    for day in days:
        table = day_files.read_day(store, settings.prefix, day.isoformat())
        key = layout.partition_key(settings.prefix, day.isoformat())
        if table is None:
            _say(f"{day!s:<12}{'-':>6}{'-':>10}  (no data that day: skipped)")
            continue
        written += 1
        size = Path(store.uri(key)).stat().st_size
        _say(f"{day!s:<12}{table.num_rows:>6}{size:>10}  {store.uri(key)}")
    _say(f"\n{written} of {len(days)} days written and cataloged in {settings.catalog_path}.")
    _say(f"\nHow fast did {settings.iso_code} cases grow in the range's last week, per 100,000?")
    sql = (
        f"select date, iso, new_cases, round(new_cases_7d_avg) as avg_7d, "
        f"round(cases_7d_per_100k, 1) as per_100k_7d, new_deaths "
        f"from {settings.country_daily_table} order by date desc, iso limit 7"
    )
    _say(f'$ covid-pipeline query "{sql}"')
    columns, rows = duckdb_catalog.query(settings.catalog_path, sql)
    _say(format_table(columns, rows, max_rows=7))
    _say(
        "More examples in the README. The runs, and the chart of the curve "
        "(covid_country_daily_summary), in the UI: make dev"
    )
    return 0


def _run_showing_progress(command: list[str], env: dict[str, str]) -> int:
    """Run the CLI, showing its INFO and ERROR lines (the progress), not its DEBUG chatter."""
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    tail: list[str] = []
    for line in process.stdout:
        tail = [*tail[-40:], line]
        if " - INFO - " in line or " - ERROR - " in line:
            _say("  " + line.rstrip().split(" - ")[-1])
    code = process.wait()
    if code != 0:
        _say("".join(tail))
    return code


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
