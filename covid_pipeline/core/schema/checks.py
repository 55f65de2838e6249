"""Data checks over the days a run fetched: pure functions, so any entry point can use them.

Each check looks at every day of the run and names the days that fail it, so that a check
result in the UI says where to look, not just that something is wrong.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from covid_pipeline.core.schema.transform import SCHEMA
from covid_pipeline.core.source.countries import Countries

Tables = Mapping[str, pa.Table]
_CUMULATIVE = ("confirmed", "deaths", "recovered")
MIN_ROW_CHANGE = 10  # rows a day may gain or lose before row_count_steady notices

# What each check is for, as the UI shows it on the check's definition.
ABOUT = {
    "schema_as_documented": "Every day's file has exactly the documented columns and types "
    "(covid_pipeline/core/schema/transform.py). Glue and Athena reject a table whose partitions "
    "disagree, so this holds the lake together.",
    "cumulative_counts_non_negative": "confirmed, deaths and recovered are running totals, so "
    "never below zero (active can be: JHU's 'Recovered' rows carry negative active counts).",
    "names_present": "Every row carries a region code and a name: under ALL any code the API "
    "gives (ISO 3166-1 alpha-3, or its own for ships and groupings), for a list one of the "
    "codes asked for (ISO_CODE). Rows of another region, or nameless ones, mean the API "
    "answered something else.",
    "row_count_steady": "A day's row count stays within 50% of the previous day with data, "
    f"unless it moves by fewer than {MIN_ROW_CHANGE} rows. A jump usually means the source "
    "changed its granularity (US counties to states on 2020-03-10) or dropped regions. A "
    "warning, not an error: sources do change, rarely.",
}


@dataclass(frozen=True)
class CheckOutcome:
    """Whether a check passed, and why not for each failing day."""

    name: str
    description: str
    failing_days: dict[str, str] = field(default_factory=dict)
    checked_days: int = 0

    @property
    def passed(self) -> bool:
        """True when no day failed."""
        return not self.failing_days


def schema_as_documented(tables: Tables) -> CheckOutcome:
    """Every day's table has exactly the documented schema."""
    failing = {
        day: f"schema differs: {table.schema.names}"
        for day, table in tables.items()
        if not table.schema.equals(SCHEMA)
    }
    return CheckOutcome(
        "schema_as_documented", "columns and types as documented", failing, len(tables)
    )


def cumulative_counts_non_negative(tables: Tables) -> CheckOutcome:
    """Cumulative counts are never negative (`active` may be: JHU's Recovered rows)."""
    failing = {}
    for day, table in tables.items():
        negative = {name: pc.sum(pc.less(table[name], 0)).as_py() or 0 for name in _CUMULATIVE}
        if any(negative.values()):
            failing[day] = ", ".join(f"{n} negative in {c} rows" for n, c in negative.items() if c)
    return CheckOutcome(
        "cumulative_counts_non_negative",
        "confirmed, deaths and recovered are >= 0",
        failing,
        len(tables),
    )


def names_present(tables: Tables, countries: str) -> CheckOutcome:
    """Every row names its region, with a code of the set that was asked for.

    `countries` is the set's label: one code, a list (CAN,USA; compared without case), or ALL
    (any code that is not empty: the API's own codes are not all ISO).
    """
    wanted = Countries.parse(countries)
    failing = {}
    for day, table in tables.items():
        if wanted.is_all:
            asked = pc.greater(pc.utf8_length(table["iso"]), 0)
        else:
            asked = pc.is_in(pc.utf8_upper(table["iso"]), value_set=pa.array(wanted.codes))
        wrong_iso = pc.sum(pc.invert(asked)).as_py() or 0
        no_name = pc.sum(pc.equal(pc.utf8_length(table["country"]), 0)).as_py() or 0
        if wrong_iso or no_name:
            failing[day] = f"{wrong_iso} rows with another iso, {no_name} without a country name"
    what = "a region code" if wanted.is_all else f"one of {wanted.label}"
    return CheckOutcome(
        "names_present", f"iso is {what} and the country is named", failing, len(tables)
    )


def row_count_steady(
    rows_by_day: Mapping[str, int], max_change: float = 0.5, min_rows: int = MIN_ROW_CHANGE
) -> CheckOutcome:
    """A day's row count is within `max_change` of the previous day's that had rows.

    Regions rarely appear or vanish; a jump usually means the source changed its granularity
    or dropped regions. A change of fewer than `min_rows` rows is never flagged: a country with
    one row that gains a province doubles, and that is news to nobody. Days without data
    (skipped) are not compared.
    """
    failing = {}
    previous: tuple[str, int] | None = None
    for day in sorted(rows_by_day):
        rows = rows_by_day[day]
        if rows == 0:
            continue
        if previous is not None:
            change = abs(rows - previous[1])
            if change > max_change * previous[1] and change >= min_rows:
                failing[day] = f"{rows} rows against {previous[1]} on {previous[0]}"
        previous = (day, rows)
    return CheckOutcome(
        "row_count_steady",
        f"row count within {max_change:.0%} (or {min_rows} rows) of the previous day with data",
        failing,
        len(rows_by_day),
    )


def run_all(tables: Tables, countries: str) -> list[CheckOutcome]:
    """Every check over `tables`, in the order the UI lists them."""
    return [
        schema_as_documented(tables),
        cumulative_counts_non_negative(tables),
        names_present(tables, countries),
        row_count_steady({day: table.num_rows for day, table in tables.items()}),
    ]


def failures_of_day(day: str, table: pa.Table, countries: str) -> dict[str, str]:
    """The single-day checks that `table` fails: {check name: why}. For streaming backfills."""
    return {
        outcome.name: outcome.failing_days[day]
        for outcome in run_all({day: table}, countries)
        if not outcome.passed
    }


def merge(
    failures_by_day: Mapping[str, Mapping[str, str]], rows_by_day: Mapping[str, int], countries: str
) -> list[CheckOutcome]:
    """Whole-run outcomes from per-day failures (as streaming backfills report them)."""
    outcomes = []
    for template in run_all({}, countries):  # over no days: each check's name and description
        if template.name == "row_count_steady":
            outcomes.append(row_count_steady(rows_by_day))
            continue
        failing = {
            day: failures[template.name]
            for day, failures in sorted(failures_by_day.items())
            if template.name in failures
        }
        outcomes.append(
            CheckOutcome(template.name, template.description, failing, len(rows_by_day))
        )
    return outcomes
