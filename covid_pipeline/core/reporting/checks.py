"""Checks on the country-day tables a run made: each names the days that fail it, and why.

They read the tables as written (and the raw day's own sums), not the roll-up's working
state, so a mistake in the roll-up shows up here rather than being repeated. Each check is
computed on the columns of every day at once; only failing rows are turned into words.
"""

import datetime as dt
import functools
from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from covid_pipeline.core.reporting.country_daily import (
    AVERAGE_DAYS,
    PER_PEOPLE,
    CountryDay,
    all_rows,
)
from covid_pipeline.core.schema.checks import CheckOutcome

# What each check is for, as the UI shows it on the check's definition.
ABOUT = {
    "sums_match_raw": "Each day's country rows add up to the raw day: as many regions as raw "
    "rows, and the same total confirmed and deaths. Nothing lost or counted twice in the roll-up.",
    "new_counts_match_api": "Where a country's regions are the same as the day before, its "
    "new_cases and new_deaths (the change of its totals) equal the sums of the API's own "
    "confirmed_diff and deaths_diff. Where a region appeared or vanished they may differ: "
    "those days are listed, not failed (docs/data.md).",
    "averages_match_daily_values": "Each 7-day average is the sum of the new counts of that "
    "day and the six before, as written, divided by 7; each rate per 100,000 is that sum over "
    "the population. Checked for the days whose whole week this run wrote.",
    "population_from_lookup": "Every code of JHU CSSE's lookup table has its population; every "
    "other code (ships, groupings, later countries) has none, and then no per-capita rates.",
}
# What averages_match_daily_values reads of the tables.
_AVERAGES_READ = (
    "report_date",
    "iso",
    "new_cases",
    "new_deaths",
    "new_cases_7d_avg",
    "new_deaths_7d_avg",
    "days_in_average",
    "population",
    "cases_7d_per_100k",
)
# math.isclose's tolerances, for the recomputed averages and rates.
_REL_TOL = _ABS_TOL = 1e-9


def sums_match_raw(days: Sequence[CountryDay]) -> CheckOutcome:
    """The country rows of each day add up to the raw day's rows, confirmed and deaths."""
    failing = {}
    for day in days:
        if day.raw is None:
            continue
        found = tuple(_total(day.table[column]) for column in ("regions", "confirmed", "deaths"))
        expected = (day.raw.rows, day.raw.confirmed or 0, day.raw.deaths or 0)
        if found != expected:
            failing[day.day] = f"(regions, confirmed, deaths) {found}, raw {expected}"
    return CheckOutcome("sums_match_raw", ABOUT["sums_match_raw"], failing, _checked(days))


def new_counts_match_api(days: Sequence[CountryDay]) -> tuple[CheckOutcome, int]:
    """New counts equal the API's diffs where regions are unchanged; and how many changed."""
    rows = all_rows(days)
    changed = rows["regions_changed"]  # null: no day before to compare with
    unchanged = pc.fill_null(pc.invert(changed), False)
    differs = pc.or_(
        _differ(rows["new_cases"], rows["api_new_cases"]),
        _differ(rows["new_deaths"], rows["api_new_deaths"]),
    )
    failing: dict[str, str] = {}
    for row in rows.filter(pc.and_(unchanged, differs)).to_pylist():
        ours = (row["new_cases"], row["new_deaths"])
        api = (row["api_new_cases"], row["api_new_deaths"])
        _add(failing, row, f"new {ours}, API {api}")
    outcome = CheckOutcome(
        "new_counts_match_api", ABOUT["new_counts_match_api"], failing, _checked(days)
    )
    return outcome, pc.sum(pc.fill_null(changed, False).cast(pa.int64())).as_py() or 0


def averages_match_daily_values(days: Sequence[CountryDay]) -> CheckOutcome:
    """Averages and rates recomputed from the written new counts of each day's week."""
    dates = {dt.date.fromisoformat(day.day) for day in days}
    whole_weeks = sorted(
        date
        for date in dates
        if all(date - dt.timedelta(days=back) in dates for back in range(AVERAGE_DAYS))
    )  # the other days' weeks were partly written by another run
    # The columns this check reads, in one chunk: Arrow's cost is per chunk, and there is a
    # chunk a day.
    written = all_rows(days).select(list(_AVERAGES_READ)).combine_chunks()
    in_whole_weeks = pc.is_in(written["report_date"], value_set=pa.array(whole_weeks, pa.date32()))
    rows = _with_weeks(written.filter(in_whole_weeks), written)
    expected = {
        column: pc.divide(rows[f"week_{counts}"].cast(pa.float64()), float(AVERAGE_DAYS))
        for column, counts in (
            ("new_cases_7d_avg", "new_cases"),
            ("new_deaths_7d_avg", "new_deaths"),
        )
    }
    # The rate from the row's own average, where it and the population are known.
    expected["cases_7d_per_100k"] = pc.divide(
        pc.multiply(pc.multiply(rows["new_cases_7d_avg"], float(AVERAGE_DAYS)), float(PER_PEOPLE)),
        rows["population"].cast(pa.float64()),
    )
    problems = {"days_in_average": _differ(rows["days_in_average"], rows["week_days"])}
    problems |= {column: _not_close(rows[column], value) for column, value in expected.items()}
    # Without both, there is no rate to expect: population_from_lookup checks it is null.
    rated = pc.and_(pc.is_valid(rows["population"]), pc.is_valid(rows["new_cases_7d_avg"]))
    problems["cases_7d_per_100k"] = pc.and_(rated, problems["cases_7d_per_100k"])
    for column, value in expected.items():
        rows = rows.append_column(f"expected_{column}", value)
    for column, problem in problems.items():
        rows = rows.append_column(f"bad_{column}", problem)
    any_problem = functools.reduce(pc.or_, problems.values())
    failing: dict[str, str] = {}
    bad = rows.filter(any_problem).sort_by([("report_date", "ascending"), ("iso", "ascending")])
    for row in bad.to_pylist():
        _add(failing, row, _week_problem(row))
    return CheckOutcome(
        "averages_match_daily_values",
        ABOUT["averages_match_daily_values"],
        failing,
        len(whole_weeks),
    )


def population_from_lookup(
    days: Sequence[CountryDay], populations: Mapping[str, int]
) -> CheckOutcome:
    """Population as the lookup has it, and per-capita rates only where it does."""
    rows = all_rows(days)
    codes = pa.array(list(populations), pa.string())
    lookup = pa.array(list(populations.values()), pa.int64())
    expected = lookup.take(pc.index_in(rows["iso"], value_set=codes))
    rated_without = pc.and_(pc.is_null(expected), pc.is_valid(rows["cases_7d_per_100k"]))
    bad = pc.or_(_differ(rows["population"], expected), rated_without)
    failing: dict[str, str] = {}
    for row in rows.append_column("lookup", expected).filter(bad).to_pylist():
        _add(failing, row, f"population {row['population']}, lookup {row['lookup']}")
    return CheckOutcome(
        "population_from_lookup", ABOUT["population_from_lookup"], failing, _checked(days)
    )


def _with_weeks(rows: pa.Table, written: pa.Table) -> pa.Table:
    """`rows` with their week's figures from `written`: days with rows, new counts summed.

    Each written row is counted again on each of the six days after it, the weeks it is in;
    a sum is null when one of its values is (as the roll-up's). The week's own day always has
    a row, so every row finds its week. Keyed by one integer per (code, day), not by strings.
    """
    codes = pc.unique(written["iso"])
    counts = pa.table(
        {
            "week_end": _day_key(written, codes),
            "new_cases": written["new_cases"],
            "new_deaths": written["new_deaths"],
        }
    )
    ends = pa.concat_tables(
        counts.set_column(0, "week_end", pc.add(counts["week_end"], back))
        for back in range(AVERAGE_DAYS)
    )
    keep_nulls = pc.ScalarAggregateOptions(skip_nulls=False)
    weeks = ends.group_by("week_end", use_threads=False).aggregate(
        [
            ([], "count_all"),
            ("new_cases", "sum", keep_nulls),
            ("new_deaths", "sum", keep_nulls),
        ]
    )
    at = pc.index_in(_day_key(rows, codes), value_set=weeks["week_end"].combine_chunks())
    return (
        rows.append_column("week_days", weeks["count_all"].take(at))
        .append_column("week_new_cases", weeks["new_cases_sum"].take(at))
        .append_column("week_new_deaths", weeks["new_deaths_sum"].take(at))
    )


def _day_key(table: pa.Table, codes: pa.Array) -> pa.ChunkedArray:
    """(code, day) as one int64: the code's place in `codes`, then the day (days since 1970)."""
    place = pc.index_in(table["iso"], value_set=codes).cast(pa.int64())
    day = table["report_date"].cast(pa.int32()).cast(pa.int64())
    return pc.add(pc.multiply(place, 1 << 32), day)


def _week_problem(row: Mapping[str, object]) -> str:
    """The first of a failing row's problems, in words."""
    if row["bad_days_in_average"]:
        return f"days_in_average {row['days_in_average']}, but {row['week_days']} days have rows"
    column = next(
        name
        for name in ("new_cases_7d_avg", "new_deaths_7d_avg", "cases_7d_per_100k")
        if row[f"bad_{name}"]
    )
    expected = row[f"expected_{column}"]
    if column == "cases_7d_per_100k":
        return f"{column} {row[column]}, expected {expected}"
    return f"{column} {row[column]}, the week's values give {expected}"


def _differ(found: pa.ChunkedArray, expected: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    """Not the same value, a null being a value of its own (as Python's `!=` with None)."""
    return _unless_both_null(found, expected, pc.not_equal(found, expected))


def _not_close(found: pa.ChunkedArray, expected: pa.ChunkedArray) -> pa.ChunkedArray:
    """Not math.isclose(found, expected), both null being close and one null not."""
    tolerance = pc.max_element_wise(
        pc.multiply(pc.max_element_wise(pc.abs(found), pc.abs(expected)), _REL_TOL), _ABS_TOL
    )
    close = pc.or_(
        pc.equal(found, expected),  # inf and inf, where the difference is nan
        pc.less_equal(pc.abs(pc.subtract(found, expected)), tolerance),
    )
    return _unless_both_null(found, expected, pc.invert(close))


def _unless_both_null(
    found: pa.ChunkedArray, expected: pa.ChunkedArray | pa.Array, unlike: pa.ChunkedArray
) -> pa.ChunkedArray:
    """`unlike` where both values are known; true where one is null; false where both are."""
    one_null = pc.xor(pc.is_null(found), pc.is_null(expected))
    return pc.or_(one_null, pc.fill_null(unlike, False))


def _add(failing: dict[str, str], row: Mapping[str, object], problem: str) -> None:
    date = row["report_date"]
    assert isinstance(date, dt.date)
    day = date.isoformat()
    failing[day] = failing.get(day, "") + f"{row['iso']}: {problem}; "


def _total(column: pa.ChunkedArray) -> int:
    return pc.sum(column).as_py() or 0


def _checked(days: Sequence[CountryDay]) -> int:
    return sum(day.raw is not None for day in days)
