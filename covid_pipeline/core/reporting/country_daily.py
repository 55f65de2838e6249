"""Raw days -> the country-day table: one row per region code per day, ready for reporting.

Every reader of the raw table would otherwise redo the same analyst work, in every engine:
add provinces (and the US states) up to their country, turn cumulative counts into new ones,
smooth the weekday reporting pattern over 7 days, and divide by population. docs/data.md
defines each column; in short:

- `new_cases` on day D is the change of the country's summed `confirmed` since D-1. When the
  country has no rows on D-1 (its first report, or a day the lake lacks), it is the sum of the
  API's own `confirmed_diff` instead. Negative values (JHU's corrections) are kept as they are.
- `api_new_cases` is that sum of `confirmed_diff`, kept beside it as a check: the two agree
  whenever the country's regions are the same as the day before, and may not when a province
  appears or vanishes (`regions_changed`); the `new_counts_match_api` check holds this.
- The 7-day averages are over D-6..D, the days the country reported on (`days_in_average`
  says how many), divided by 7. Their first day's new cases need D-7: day D reads raw days
  D-7..D (`LOOKBACK_DAYS`).

`roll_up` streams: it keeps eight days of per-country totals, never the raw tables, so a
run over the whole history takes the memory of a week.
"""

import collections
import dataclasses
import datetime as dt
from collections.abc import Collection, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

# What a day's country-day file means, by version: bump it when a column's definition changes
# (a change of SCHEMA changes the asset's code_version by itself).
FORMAT_VERSION = 1
LOOKBACK_DAYS = 7  # day D reads D-7..D: new cases on D-6 are measured from D-7's totals
AVERAGE_DAYS = 7
PER_PEOPLE = 100_000
# The raw columns the roll-up reads: never `cities`, the nested US counties.
INPUT_COLUMNS = (
    "iso",
    "country",
    "province",
    "confirmed",
    "deaths",
    "confirmed_diff",
    "deaths_diff",
)

DESCRIPTION = "COVID-19 by country and day: new cases, 7-day averages, rates per 100,000"
# (column, type, nullable, description): the one declaration of the country-day file format.
COLUMNS: Sequence[tuple[str, pa.DataType, bool, str]] = (
    ("report_date", pa.date32(), False, "Day the row is for (also the date= partition)"),
    ("iso", pa.string(), False, "Region code as the API gives it (ISO alpha-3, or its own)"),
    ("country", pa.string(), False, "Country name as JHU writes it"),
    ("regions", pa.int64(), False, "Raw rows (provinces, or the country itself) summed"),
    ("regions_changed", pa.bool_(), True, "Regions differ from D-1's; null: no rows on D-1"),
    ("confirmed", pa.int64(), True, "Cumulative confirmed cases, summed over regions"),
    ("deaths", pa.int64(), True, "Cumulative deaths, summed over regions"),
    ("new_cases", pa.int64(), True, "confirmed - D-1's confirmed (no D-1: api_new_cases)"),
    ("new_deaths", pa.int64(), True, "deaths - D-1's deaths (no D-1: api_new_deaths)"),
    ("api_new_cases", pa.int64(), True, "Sum of the API's confirmed_diff (a check)"),
    ("api_new_deaths", pa.int64(), True, "Sum of the API's deaths_diff (a check)"),
    ("new_cases_7d_avg", pa.float64(), True, "Sum of new_cases over D-6..D, divided by 7"),
    ("new_deaths_7d_avg", pa.float64(), True, "Sum of new_deaths over D-6..D, divided by 7"),
    ("days_in_average", pa.int64(), False, "Days of D-6..D with rows for the country"),
    ("population", pa.int64(), True, "JHU CSSE lookup table; null for codes it lacks"),
    ("cases_7d_per_100k", pa.float64(), True, "new_cases over D-6..D per 100,000 people"),
    ("deaths_7d_per_100k", pa.float64(), True, "new_deaths over D-6..D per 100,000 people"),
)
SCHEMA = pa.schema(
    [
        pa.field(name, type_, nullable=nullable, metadata={"description": description})
        for name, type_, nullable, description in COLUMNS
    ]
)


@dataclass(frozen=True)
class RawSums:
    """One raw day's own totals, summed over its rows before any grouping (for the checks)."""

    rows: int
    confirmed: int | None
    deaths: int | None


@dataclass(frozen=True)
class CountryDay:
    """A day's country-day table, and the raw day's sums it was made from (None: no raw day)."""

    day: str
    table: pa.Table  # no rows: the raw day had none (skipped, as the raw day was)
    raw: RawSums | None


@dataclass(frozen=True)
class _Country:
    """One country on one day: its totals, and its new counts as measured that day."""

    country: str
    provinces: frozenset[str]
    confirmed: int | None
    deaths: int | None
    api_new_cases: int | None
    api_new_deaths: int | None
    new_cases: int | None = None
    new_deaths: int | None = None
    regions_changed: bool | None = None


def input_days(days: Iterable[str]) -> list[str]:
    """The raw days that `days` need, in order: each day and the LOOKBACK_DAYS before it."""
    needed: set[dt.date] = set()
    for day in days:
        date = dt.date.fromisoformat(day)
        needed.update(date - dt.timedelta(days=back) for back in range(LOOKBACK_DAYS + 1))
    return [date.isoformat() for date in sorted(needed)]


def roll_up(
    raw_days: Iterable[tuple[str, pa.Table | None]],
    days: Collection[str],
    populations: Mapping[str, int],
) -> Generator[CountryDay, None, None]:
    """The country-day table of each day of `days`, as the raw days stream by.

    Args:
        raw_days: (day, table with at least INPUT_COLUMNS, or None: no file), in date order,
            covering each wanted day and its LOOKBACK_DAYS (`input_days`); a day left out is
            taken as a day without rows.
        days: the days to make tables for (YYYY-MM-DD).
        populations: region code -> population (core.reporting.population).
    """
    window: collections.OrderedDict[dt.date, dict[str, _Country]] = collections.OrderedDict()
    for day, table in raw_days:
        date = dt.date.fromisoformat(day)
        before = window.get(date - dt.timedelta(days=1))
        window[date] = _measured(_totals(table), before)
        while next(iter(window)) < date - dt.timedelta(days=LOOKBACK_DAYS):
            window.popitem(last=False)
        if day in days:
            yield CountryDay(day, _rows(date, window, populations), _raw_sums(table))


def _totals(table: pa.Table | None) -> dict[str, _Country]:
    """Each region code's summed counts on one raw day."""
    if table is None or table.num_rows == 0:
        return {}
    grouped = table.group_by("iso", use_threads=False).aggregate(
        [
            ("country", "min"),
            ("province", "list"),
            ("confirmed", "sum"),
            ("deaths", "sum"),
            ("confirmed_diff", "sum"),
            ("deaths_diff", "sum"),
        ]
    )
    return {
        row["iso"]: _Country(
            country=row["country_min"],
            provinces=frozenset(row["province_list"]),
            confirmed=row["confirmed_sum"],
            deaths=row["deaths_sum"],
            api_new_cases=row["confirmed_diff_sum"],
            api_new_deaths=row["deaths_diff_sum"],
        )
        for row in grouped.to_pylist()
    }


def _measured(
    today: dict[str, _Country], yesterday: dict[str, _Country] | None
) -> dict[str, _Country]:
    """Today's countries with their new counts: the change since yesterday, else the API's."""
    measured = {}
    for iso, country in today.items():
        before = (yesterday or {}).get(iso)
        if before is None:
            new_cases, new_deaths, changed = country.api_new_cases, country.api_new_deaths, None
        else:
            new_cases = _minus(country.confirmed, before.confirmed)
            new_deaths = _minus(country.deaths, before.deaths)
            changed = country.provinces != before.provinces
        measured[iso] = dataclasses.replace(
            country, new_cases=new_cases, new_deaths=new_deaths, regions_changed=changed
        )
    return measured


def _rows(
    date: dt.date, window: Mapping[dt.date, dict[str, _Country]], populations: Mapping[str, int]
) -> pa.Table:
    """Day `date`'s rows, from the window of per-country days that ends with it."""
    week = [
        window.get(date - dt.timedelta(days=back), {}) for back in range(AVERAGE_DAYS)
    ]  # D, D-1, ..., D-6
    columns: dict[str, list[object]] = {name: [] for name in SCHEMA.names}
    for iso, today in sorted(week[0].items()):
        reported = [day[iso] for day in week if iso in day]
        cases_7d = _sum(country.new_cases for country in reported)
        deaths_7d = _sum(country.new_deaths for country in reported)
        population = populations.get(iso)
        values = {
            "report_date": date,
            "iso": iso,
            "country": today.country,
            "regions": len(today.provinces),
            "regions_changed": today.regions_changed,
            "confirmed": today.confirmed,
            "deaths": today.deaths,
            "new_cases": today.new_cases,
            "new_deaths": today.new_deaths,
            "api_new_cases": today.api_new_cases,
            "api_new_deaths": today.api_new_deaths,
            "new_cases_7d_avg": _per(cases_7d, AVERAGE_DAYS),
            "new_deaths_7d_avg": _per(deaths_7d, AVERAGE_DAYS),
            "days_in_average": len(reported),
            "population": population,
            "cases_7d_per_100k": _per(cases_7d, population, PER_PEOPLE),
            "deaths_7d_per_100k": _per(deaths_7d, population, PER_PEOPLE),
        }
        for name, value in values.items():
            columns[name].append(value)
    return pa.table(columns, schema=SCHEMA)


def _raw_sums(table: pa.Table | None) -> RawSums | None:
    if table is None:
        return None
    return RawSums(
        rows=table.num_rows,
        confirmed=pc.sum(table["confirmed"]).as_py(),
        deaths=pc.sum(table["deaths"]).as_py(),
    )


def _minus(value: int | None, before: int | None) -> int | None:
    return None if value is None or before is None else value - before


def _sum(values: Iterable[int | None]) -> int | None:
    """The sum, or None if any value is unknown (an average over a gap would mislead)."""
    total = 0
    for value in values:
        if value is None:
            return None
        total += value
    return total


def _per(total: int | None, count: int | None, scale: int = 1) -> float | None:
    return None if total is None or not count else total * scale / count
