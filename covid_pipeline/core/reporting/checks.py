"""Checks on the country-day tables a run made: each names the days that fail it, and why.

They read the tables as written (and the raw day's own sums), not the roll-up's working
state, so a mistake in the roll-up shows up here rather than being repeated.
"""

import datetime as dt
import math
from collections.abc import Mapping, Sequence

from covid_pipeline.core.reporting.country_daily import AVERAGE_DAYS, PER_PEOPLE, CountryDay
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


def sums_match_raw(days: Sequence[CountryDay]) -> CheckOutcome:
    """The country rows of each day add up to the raw day's rows, confirmed and deaths."""
    failing = {}
    for day in days:
        if day.raw is None:
            continue
        found = (
            sum(day.table["regions"].to_pylist()),
            _total(day.table["confirmed"].to_pylist()),
            _total(day.table["deaths"].to_pylist()),
        )
        expected = (day.raw.rows, day.raw.confirmed or 0, day.raw.deaths or 0)
        if found != expected:
            failing[day.day] = f"(regions, confirmed, deaths) {found}, raw {expected}"
    return CheckOutcome("sums_match_raw", ABOUT["sums_match_raw"], failing, _checked(days))


def new_counts_match_api(days: Sequence[CountryDay]) -> tuple[CheckOutcome, int]:
    """New counts equal the API's diffs where regions are unchanged; and how many changed."""
    failing: dict[str, str] = {}
    changed = 0
    for day in days:
        for row in day.table.to_pylist():
            if row["regions_changed"] is not False:  # changed, or no day before to compare
                changed += row["regions_changed"] is True
                continue
            ours = (row["new_cases"], row["new_deaths"])
            api = (row["api_new_cases"], row["api_new_deaths"])
            if ours != api:
                failing.setdefault(day.day, "")
                failing[day.day] += f"{row['iso']}: new {ours}, API {api}; "
    outcome = CheckOutcome(
        "new_counts_match_api", ABOUT["new_counts_match_api"], failing, _checked(days)
    )
    return outcome, changed


def averages_match_daily_values(days: Sequence[CountryDay]) -> CheckOutcome:
    """Averages and rates recomputed from the written new counts of each day's week."""
    by_day = {dt.date.fromisoformat(day.day): day for day in days}
    new = {
        (date, row["iso"]): (row["new_cases"], row["new_deaths"])
        for date, day in by_day.items()
        for row in day.table.select(["iso", "new_cases", "new_deaths"]).to_pylist()
    }
    failing: dict[str, str] = {}
    checked = 0
    for date, day in sorted(by_day.items()):
        week = [date - dt.timedelta(days=back) for back in range(AVERAGE_DAYS)]
        if not all(past in by_day for past in week):
            continue  # part of the week was not written by this run
        checked += 1
        for row in day.table.to_pylist():
            values = [new[past, row["iso"]] for past in week if (past, row["iso"]) in new]
            problem = _week_problem(row, values)
            if problem:
                failing.setdefault(day.day, "")
                failing[day.day] += f"{row['iso']}: {problem}; "
    return CheckOutcome(
        "averages_match_daily_values", ABOUT["averages_match_daily_values"], failing, checked
    )


def population_from_lookup(
    days: Sequence[CountryDay], populations: Mapping[str, int]
) -> CheckOutcome:
    """Population as the lookup has it, and per-capita rates only where it does."""
    failing: dict[str, str] = {}
    for day in days:
        for row in day.table.select(["iso", "population", "cases_7d_per_100k"]).to_pylist():
            expected = populations.get(row["iso"])
            rated = row["cases_7d_per_100k"] is not None
            if row["population"] != expected or (expected is None and rated):
                failing.setdefault(day.day, "")
                failing[day.day] += (
                    f"{row['iso']}: population {row['population']}, lookup {expected}; "
                )
    return CheckOutcome(
        "population_from_lookup", ABOUT["population_from_lookup"], failing, _checked(days)
    )


def _week_problem(row: Mapping[str, object], values: list[tuple[int | None, int | None]]) -> str:
    if row["days_in_average"] != len(values):
        return f"days_in_average {row['days_in_average']}, but {len(values)} days have rows"
    for index, column in enumerate(("new_cases_7d_avg", "new_deaths_7d_avg")):
        parts = [value[index] for value in values]
        expected = None if None in parts else sum(p for p in parts if p is not None) / AVERAGE_DAYS
        if not _close(row[column], expected):
            return f"{column} {row[column]}, the week's values give {expected}"
    population = row["population"]
    average = row["new_cases_7d_avg"]
    if isinstance(population, int) and isinstance(average, float):
        rate = average * AVERAGE_DAYS * PER_PEOPLE / population
        if not _close(row["cases_7d_per_100k"], rate):
            return f"cases_7d_per_100k {row['cases_7d_per_100k']}, expected {rate}"
    return ""


def _close(found: object, expected: float | None) -> bool:
    if found is None or expected is None:
        return found is None and expected is None
    return isinstance(found, float) and math.isclose(found, expected, rel_tol=1e-9, abs_tol=1e-9)


def _total(values: list[int | None]) -> int:
    return sum(value for value in values if value is not None)


def _checked(days: Sequence[CountryDay]) -> int:
    return sum(day.raw is not None for day in days)
