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

`roll_up` streams: it takes the raw days BLOCK_DAYS at a time and keeps the last week's
per-country figures, never the history, so a run over the whole history takes the memory of
a few weeks. It is columnar: each step is an Arrow call over a block's rows (the world has
about 190 codes a day), with no Python per row or per country. Day by day, Arrow's fixed
cost per call was most of the time (docs/performance.md).
"""

import datetime as dt
import itertools
from collections.abc import Collection, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

# What a day's country-day file means, by version: bump it when a column's definition changes
# (a change of SCHEMA changes the asset's code_version by itself).
FORMAT_VERSION = 1
LOOKBACK_DAYS = 7  # day D reads D-7..D: new cases on D-6 are measured from D-7's totals
# Raw days rolled up at once: Arrow's cost per call is paid per block, not per day.
BLOCK_DAYS = 16
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
    lookup = pa.table(
        {"iso": list(populations), "population": list(populations.values())},
        schema=pa.schema([("iso", pa.string()), ("population", pa.int64())]),
    )
    recent = _NO_COUNTRIES  # the countries of the last days read: D-1 and D-6 of what follows
    for block in _blocks(raw_days):
        rows = _stacked(block)
        totals = _totals(rows)
        # recent's and totals' (day, code) keys, in that order: where the rows of `known` in
        # `_measured` and of `history` are, built once for the block's eight lookups.
        index = _index(pa.concat_tables([recent.select(_KEY), totals.select(_KEY)]))
        countries = _measured(totals, recent, index)
        history = pa.concat_tables([recent, countries])
        tables = _by_day(_rows(countries, history, index, lookup))
        sums = _raw_sums(rows)
        for day, table in block:
            if day in days:
                number = _day_number(day)
                # No file: no sums. A file without rows: sums of nothing.
                raw = None if table is None else sums.get(number, RawSums(0, None, None))
                yield CountryDay(day, tables.get(number, _EMPTY), raw)
        last = _day_number(block[-1][0])
        recent = history.filter(pc.greater(history["day"], last - AVERAGE_DAYS))


def _blocks(
    raw_days: Iterable[tuple[str, pa.Table | None]],
) -> Iterator[list[tuple[str, pa.Table | None]]]:
    """The raw days, BLOCK_DAYS at a time."""
    iterator = iter(raw_days)
    while block := list(itertools.islice(iterator, BLOCK_DAYS)):
        yield block


# Countries by day, one row per (day, region code), sorted by both. `day` is the date as
# days since 1970-01-01 (date32's value); `provinces` is the code's set of provinces that day
# as one string, so that two days' sets compare as values.
_COUNTRIES = pa.schema(
    [
        ("day", pa.int32()),
        ("iso", pa.string()),
        ("country", pa.string()),
        ("regions", pa.int64()),
        ("provinces", pa.string()),
        ("confirmed", pa.int64()),
        ("deaths", pa.int64()),
        ("api_new_cases", pa.int64()),
        ("api_new_deaths", pa.int64()),
    ]
)
# ... with their new counts, as measured against the day before (`_measured`).
_MEASURED = (
    _COUNTRIES.append(pa.field("new_cases", pa.int64()))
    .append(pa.field("new_deaths", pa.int64()))
    .append(pa.field("regions_changed", pa.bool_()))
)
_NO_COUNTRIES = pa.Table.from_batches([], _MEASURED)
_KEY = ["day", "iso"]  # a country-day's key
_EMPTY = pa.Table.from_batches([], SCHEMA)  # not SCHEMA.empty_table(): that imports pandas
_EPOCH = dt.date(1970, 1, 1)
# Between two province names in `provinces`, and between day and code in a key: a control
# character no name holds.
_SEPARATOR = "\x1f"


def _stacked(block: Sequence[tuple[str, pa.Table | None]]) -> pa.Table | None:
    """The raw rows of a block's days in one table, each with its `day` (None: no rows)."""
    tables = [
        table.select(list(INPUT_COLUMNS)).append_column(
            "day", pa.repeat(pa.scalar(_day_number(day), pa.int32()), table.num_rows)
        )
        for day, table in block
        if table is not None and table.num_rows
    ]
    return pa.concat_tables(tables, promote_options="permissive") if tables else None


def _totals(rows: pa.Table | None) -> pa.Table:
    """Each region code's summed counts on each day of `rows`, and its set of provinces."""
    if rows is None:
        return pa.Table.from_batches([], _COUNTRIES)
    keys = [("day", "ascending"), ("iso", "ascending")]
    sums = (
        rows.group_by(["day", "iso"], use_threads=False)
        .aggregate(
            [
                ("country", "min"),
                ("confirmed", "sum"),
                ("deaths", "sum"),
                ("confirmed_diff", "sum"),
                ("deaths_diff", "sum"),
            ]
        )
        .sort_by(keys)
    )
    # The raw schema writes the country level as "" (never null): a null is read as that.
    pairs = pa.table(
        {
            "day": rows["day"],
            "iso": rows["iso"],
            "province": pc.fill_null(rows["province"], ""),
        }
    )
    distinct = pairs.group_by(["day", "iso", "province"], use_threads=False).aggregate([])
    # Single-threaded, a group's list keeps the input's order (pyarrow's Table.group_by): the
    # provinces sorted, so the same set is the same string on every day.
    provinces = (
        distinct.sort_by([*keys, ("province", "ascending")])
        .group_by(["day", "iso"], use_threads=False)
        .aggregate([("province", "list")])
        .sort_by(keys)
    )
    listed = provinces["province_list"]
    return pa.table(
        [
            sums["day"],
            sums["iso"],
            sums["country_min"],
            pc.list_value_length(listed).cast(pa.int64()),
            pc.binary_join(listed, _SEPARATOR),
            sums["confirmed_sum"],
            sums["deaths_sum"],
            sums["confirmed_diff_sum"],
            sums["deaths_diff_sum"],
        ],
        schema=_COUNTRIES,
    )


def _measured(countries: pa.Table, recent: pa.Table, index: pa.Array) -> pa.Table:
    """Countries with their new counts: the change since the day before, else the API's.

    `index` holds the keys of recent's rows and then of countries' (`_index`).
    """
    known = pa.concat_tables([recent.select(_COUNTRIES.names), countries])
    at = _positions(countries, index, back=1)  # null: no row the day before
    had = pc.is_valid(at)

    def change(column: str) -> pa.ChunkedArray:
        return pc.subtract(countries[column], known[column].take(at))

    return (
        countries.append_column(
            "new_cases", pc.if_else(had, change("confirmed"), countries["api_new_cases"])
        )
        .append_column("new_deaths", pc.if_else(had, change("deaths"), countries["api_new_deaths"]))
        .append_column(
            "regions_changed",
            pc.if_else(
                had,
                pc.not_equal(countries["provinces"], known["provinces"].take(at)),
                pa.scalar(None, pa.bool_()),
            ),
        )
    )


def _rows(countries: pa.Table, history: pa.Table, index: pa.Array, lookup: pa.Table) -> pa.Table:
    """The country-day rows of `countries`, with 7-day figures from `history`.

    `history` holds the countries' days and the six days before the first of them; `index`
    its rows' keys (`_index`).
    """
    reported = pa.array([0] * countries.num_rows, pa.int64())  # days of the week with a row
    week_new = {"new_cases": reported, "new_deaths": reported}
    for back in range(AVERAGE_DAYS):  # D, D-1, ..., D-6
        at = _positions(countries, index, back)
        present = pc.is_valid(at)
        reported = pc.add(reported, present.cast(pa.int64()))
        for column, total in week_new.items():
            # A day with a row but an unknown count makes the week's sum unknown (null):
            # an average over a gap would mislead.
            week_new[column] = pc.add(total, pc.if_else(present, history[column].take(at), 0))
    iso = countries["iso"]
    population = lookup["population"].take(pc.index_in(iso, value_set=lookup["iso"]))
    people = pc.if_else(pc.greater(population, 0), population, pa.scalar(None, pa.int64()))
    return pa.table(
        {
            "report_date": countries["day"].cast(pa.date32()),
            "iso": iso,
            "country": countries["country"],
            "regions": countries["regions"],
            "regions_changed": countries["regions_changed"],
            "confirmed": countries["confirmed"],
            "deaths": countries["deaths"],
            "new_cases": countries["new_cases"],
            "new_deaths": countries["new_deaths"],
            "api_new_cases": countries["api_new_cases"],
            "api_new_deaths": countries["api_new_deaths"],
            "new_cases_7d_avg": _per(week_new["new_cases"], AVERAGE_DAYS),
            "new_deaths_7d_avg": _per(week_new["new_deaths"], AVERAGE_DAYS),
            "days_in_average": reported,
            "population": population,
            "cases_7d_per_100k": _per(week_new["new_cases"], people, PER_PEOPLE),
            "deaths_7d_per_100k": _per(week_new["new_deaths"], people, PER_PEOPLE),
        },
        schema=SCHEMA,
    )


def _by_day(rows: pa.Table) -> dict[int, pa.Table]:
    """The rows (sorted by day) of each day, by day number: slices, not copies."""
    tables, offset = {}, 0
    for run in pc.value_counts(rows["report_date"].cast(pa.int32())).to_pylist():
        tables[run["values"]] = rows.slice(offset, run["counts"])
        offset += run["counts"]
    return tables


def _raw_sums(rows: pa.Table | None) -> dict[int, RawSums]:
    """Each day's raw rows summed as they are, by day number: what the checks compare with."""
    if rows is None:
        return {}
    sums = rows.group_by("day", use_threads=False).aggregate(
        [([], "count_all"), ("confirmed", "sum"), ("deaths", "sum")]
    )
    return {
        day["day"]: RawSums(day["count_all"], day["confirmed_sum"], day["deaths_sum"])
        for day in sums.to_pylist()
    }


def _index(table: pa.Table) -> pa.Array:
    """The (day, code) key of each of `table`'s rows, in order: what `_positions` looks in."""
    return _keys(table["day"], table["iso"]).combine_chunks()


def _positions(countries: pa.Table, index: pa.Array, back: int) -> pa.Array:
    """Where each (day - back, code) of `countries` is in `index` (null: not there)."""
    wanted = _keys(pc.subtract(countries["day"], pa.scalar(back, pa.int32())), countries["iso"])
    return pc.index_in(wanted, value_set=index)


def _keys(day: pa.ChunkedArray, iso: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.binary_join_element_wise(day.cast(pa.string()), iso, _SEPARATOR)


def _day_number(day: str) -> int:
    return (dt.date.fromisoformat(day) - _EPOCH).days


def _per(total: pa.Array, count: pa.Array | int, scale: int = 1) -> pa.Array:
    """Divide total x scale by count, as float64: null where either is unknown.

    total x scale is exact in int64, and both sides exact in float64 (below 2**53), so the
    one rounding is the division's: the value Python's `total * scale / count` gives.
    """
    scaled = pc.multiply_checked(total, scale).cast(pa.float64())
    return pc.divide(scaled, count if isinstance(count, int) else count.cast(pa.float64()))


def all_rows(days: Sequence[CountryDay]) -> pa.Table:
    """Every row of `days`' tables, as one table (their `report_date` says whose)."""
    tables = [day.table for day in days]
    return pa.concat_tables(tables) if tables else empty_table()


def empty_table() -> pa.Table:
    """A table of SCHEMA without rows (not SCHEMA.empty_table(): that imports pandas, 0.3 s)."""
    return _EMPTY
