"""The reporting assets: the country-day table, and the summary that charts it in the UI.

`covid_country_daily` reads the raw days through the IO manager (only the columns the roll-up
needs, a few days at a time), rolls them up with `core.reporting.country_daily`, and hands
the country-day tables back to the IO manager, which writes them as the raw days are written,
under a prefix of their own. Day D needs raw days D-7..D, which its partition mapping says, so
a backfill and the automation ask for what it needs; the automation recomputes D..D+7 once
when raw day D changes, whichever surface wrote it.
"""

import math
import warnings
from collections.abc import Generator, Iterator

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from covid_pipeline.assets import AFTER_NEW_DAYS, OWNERS, TAGS, check_results
from covid_pipeline.core.engine.report import Progress, short_list
from covid_pipeline.core.lake import parquet
from covid_pipeline.core.lake.day_files import LakeDays
from covid_pipeline.core.reporting import checks, country_daily, population
from covid_pipeline.io_managers import DayTable, DayTables, HiveParquetIOManager
from covid_pipeline.partitions import DAILY_PARTITIONS
from covid_pipeline.resources import CovidApiResource

# Beta in Dagster 1.13, and needed: without it the mapping of 2020-01-22 (D-7 is before the
# first day) raises. Its warning at every code load would only be noise to the users.
warnings.filterwarnings(
    "ignore",
    message="Parameter `allow_nonexistent_upstream_partitions`",
    category=dg.BetaWarning,
)

COUNTRY_DAILY = dg.AssetKey("covid_country_daily")
COUNTRY_DAILY_IO_MANAGER = "country_daily_io_manager"
COUNTRY_DAILY_COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn(name, str(type_), description=description)
        for name, type_, _nullable, description in country_daily.COLUMNS
    ]
)
_CHECKS = {
    "sums_match_raw": dg.AssetCheckSeverity.ERROR,
    "new_counts_match_api": dg.AssetCheckSeverity.WARN,  # the source's own inconsistency
    "averages_match_daily_values": dg.AssetCheckSeverity.ERROR,
    "population_from_lookup": dg.AssetCheckSeverity.ERROR,
}
# What the summary's chart reads of each country-day file.
SUMMARY_COLUMNS = ["iso", "new_cases_7d_avg", "new_deaths_7d_avg"]
_NO_RAW_DAY = "no raw day in the lake: the API had no data, or it is not backfilled yet"


@dg.asset(
    partitions_def=DAILY_PARTITIONS,
    ins={
        "covid_daily_reports": dg.AssetIn(
            # Day D reads D-7..D; the days before 2020-01-22 do not exist, and are not asked for.
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-country_daily.LOOKBACK_DAYS,
                allow_nonexistent_upstream_partitions=True,
            ),
            metadata={"columns": list(country_daily.INPUT_COLUMNS)},
        )
    },
    # A range is one run, as for the raw days: the whole history is one run of a few seconds.
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key=COUNTRY_DAILY_IO_MANAGER,
    group_name="covid",
    kinds={"parquet", "python"},
    owners=OWNERS,
    tags=TAGS | {"layer": "reporting"},
    code_version=parquet.format_version(country_daily.SCHEMA, country_daily.FORMAT_VERSION),
    check_specs=[
        dg.AssetCheckSpec(name, asset=COUNTRY_DAILY, description=checks.ABOUT[name])
        for name in _CHECKS
    ],
    metadata={"dagster/column_schema": COUNTRY_DAILY_COLUMNS},
    # Raw day D changed (any surface): D..D+7 are recomputed, once, after the raw run ends.
    automation_condition=AFTER_NEW_DAYS,
)
def covid_country_daily(
    context: dg.AssetExecutionContext,
    covid_daily_reports: LakeDays,
    covid_api: CovidApiResource,
    country_daily_io_manager: dg.ResourceParam[HiveParquetIOManager],
) -> Iterator[dg.Output[DayTables] | dg.AssetCheckResult]:
    """COVID-19 by country and day: new cases and deaths, 7-day averages, rates per 100,000.

    One row per region code per day, from the raw days of `covid_daily_reports` (provinces and
    US states added up to their country). `new_cases` is the change of the country's total
    since the day before, negative corrections included; the API's own diffs are kept beside
    it as a check. Definitions in docs/data.md. A day without a raw day is skipped.
    """
    days = list(context.partition_keys)
    countries = covid_api.countries().label
    # A prefix of another country set's days fails now, as the raw asset's does.
    country_daily_io_manager.preflight(countries)
    raw = covid_daily_reports
    context.log.info(
        f"rolling up {len(days)} days of {countries} from {len(raw)} raw days "
        f"({raw.days[0]}..{raw.days[-1]}: each day reads the {country_daily.LOOKBACK_DAYS} before)"
    )
    progress = Progress("read", len(raw), context.log.info)
    made: list[country_daily.CountryDay] = []  # filled as the IO manager writes each day
    rolled = country_daily.roll_up(_counted(raw, progress), set(days), population.populations())
    yield dg.Output(DayTables(_day_tables(rolled, days, made), countries))
    _log_corrections(context, made)
    new_counts, changed = checks.new_counts_match_api(made)
    outcomes = [
        checks.sums_match_raw(made),
        new_counts,
        checks.averages_match_daily_values(made),
        checks.population_from_lookup(made, population.populations()),
    ]
    context.log.info(f"{changed} country-days had regions appear or vanish (docs/data.md)")
    yield from check_results(outcomes, _CHECKS)


def _day_tables(
    rolled: Generator[country_daily.CountryDay, None, None],
    days: list[str],
    made: list[country_daily.CountryDay],
) -> Iterator[DayTable]:
    """Each day's table as the roll-up makes it (none: an empty one), kept in `made` too.

    Computed as the IO manager asks for them, so the raw days are read while the first
    country-days are written; `made` holds them all for the checks once the output is handled.
    """
    empty = country_daily.empty_table()
    try:
        next_made = next(rolled, None)
        for day in days:
            if next_made is None or next_made.day != day:
                yield DayTable(day, empty, _day_figures(None))
                continue
            made.append(next_made)
            yield DayTable(day, next_made.table, _day_figures(next_made))
            next_made = next(rolled, None)
    finally:
        rolled.close()  # a stopped write stops the reading too


def _counted(raw: LakeDays, progress: Progress) -> Iterator[tuple[str, pa.Table | None]]:
    """The raw days, each counted as it is read: the run's log shows how far it is."""
    for day in raw:
        yield day
        progress.tick()


def _day_figures(made: country_daily.CountryDay | None) -> dict[str, object]:
    """A day's figures for the UI's *Plots*: the set's new cases and deaths, 7-day averages."""
    if made is None or made.raw is None:
        return {"skip_reason": _NO_RAW_DAY}
    table = made.table
    return {
        "new_cases_7d_avg": round(_total(table["new_cases_7d_avg"]), 1),
        "new_deaths_7d_avg": round(_total(table["new_deaths_7d_avg"]), 1),
        "countries": table.num_rows,
    }


def _total(column: pa.ChunkedArray) -> float:
    # In Python: a day has ~190 values, and an Arrow call a day, on the thread that rolls up
    # and writes, lets go of the GIL and then waits for it behind the reads (0.7 s on the
    # world's history against the S3 server).
    return math.fsum(value for value in column.to_pylist() if value is not None)


def _log_corrections(
    context: dg.AssetExecutionContext, made: list[country_daily.CountryDay]
) -> None:
    """Negative new counts are JHU's corrections: kept, and said, never hidden."""
    rows = country_daily.all_rows(made)
    below_zero = pc.or_(
        pc.less(pc.fill_null(rows["new_cases"], 0), 0),
        pc.less(pc.fill_null(rows["new_deaths"], 0), 0),
    )
    negative = [
        f"{row['report_date']} {row['iso']}"
        for row in rows.filter(below_zero).select(["report_date", "iso"]).to_pylist()
    ]
    if negative:
        context.log.info(
            f"{len(negative)} country-days carry a negative correction (kept as they are): "
            f"{short_list(negative)}"
        )


@dg.asset(
    ins={
        "covid_country_daily": dg.AssetIn(key=COUNTRY_DAILY, metadata={"columns": SUMMARY_COLUMNS})
    },
    group_name="covid",
    kinds={"python"},
    owners=OWNERS,
    tags=TAGS | {"layer": "reporting"},
    backfill_policy=dg.BackfillPolicy.single_run(),
    automation_condition=AFTER_NEW_DAYS,
)
def covid_country_daily_summary(
    context: dg.AssetExecutionContext, covid_country_daily: LakeDays, covid_api: CovidApiResource
) -> dg.MaterializeResult:
    """The epidemic's curve over every day built: new cases and deaths, 7-day averages, charted.

    Reads the country-day table (three columns of each day's file) and draws the set's daily
    figures over the whole range in the asset's metadata, where the UI shows it.
    """
    from covid_pipeline import charts  # matplotlib: loaded by this asset's runs alone

    series = charts.Series.from_days(covid_country_daily)
    if not series.days:
        raise dg.Failure(
            description="covid_country_daily has no days yet: materialize it first (a backfill "
            "of covid_daily_reports brings it by itself)",
            allow_retries=False,
        )
    label = covid_api.countries().label
    peak = series.peak()
    context.log.info(
        f"charted {len(series.days)} days of {label}, {series.days[0]}..{series.days[-1]}; "
        f"new cases peaked at {peak[1]:,.0f} a day (7-day average) on {peak[0]}"
    )
    return dg.MaterializeResult(
        metadata={
            "chart": dg.MetadataValue.md(charts.markdown(series, label)),
            "first_day": str(series.days[0]),
            "last_day": str(series.days[-1]),
            "days": len(series.days),
            "peak_day": str(peak[0]),
            "peak_new_cases_7d_avg": round(peak[1], 1),
        }
    )
