"""The country-day roll-up (core.reporting) and its checks, on the replay's real JHU history."""

import dataclasses
import datetime as dt
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from covid_pipeline_replay import jhu

from covid_pipeline.core.dates import FIRST_DAY, LAST_DAY, day_range
from covid_pipeline.core.reporting import checks, country_daily, population
from covid_pipeline.core.schema.transform import to_table

POPULATIONS = population.populations()


def raw(iso: str, day: str) -> pa.Table | None:
    """The replay's raw day as the lake holds it, only the columns the roll-up reads."""
    table = to_table(dt.date.fromisoformat(day), jhu.reports(iso, dt.date.fromisoformat(day)))
    return table.select(list(country_daily.INPUT_COLUMNS)) if table.num_rows else None


def roll(iso: str, days: list[str]) -> list[country_daily.CountryDay]:
    needed = country_daily.input_days(days)
    stream = ((day, raw(iso, day)) for day in needed if day >= FIRST_DAY.isoformat())
    return list(country_daily.roll_up(stream, set(days), POPULATIONS))


def rows(made: list[country_daily.CountryDay]) -> dict[tuple[str, str], dict]:
    return {
        (str(row["report_date"]), row["iso"]): row for day in made for row in day.table.to_pylist()
    }


@pytest.fixture(scope="module")
def usa_history() -> list[country_daily.CountryDay]:
    return roll("USA", [day.isoformat() for day in day_range(FIRST_DAY, LAST_DAY)])


def test_country_daily_usa_history_passes_every_check(usa_history) -> None:
    assert len(usa_history) == 1143 and all(day.table.num_rows == 1 for day in usa_history)
    new_counts, changed = checks.new_counts_match_api(usa_history)
    outcomes = [
        checks.sums_match_raw(usa_history),
        new_counts,
        checks.averages_match_daily_values(usa_history),
        checks.population_from_lookup(usa_history, POPULATIONS),
    ]
    assert [(o.name, o.failing_days) for o in outcomes if not o.passed] == []
    assert all(o.checked_days > 1000 for o in outcomes)
    assert 0 < changed < 100  # states and cruise ships appear and vanish, early on


def test_country_daily_values_on_a_day_follow_the_definitions(usa_history) -> None:
    """2021-01-15: the change of the summed states since the day before, averaged over 7 days."""
    by_key = rows(usa_history)
    day = by_key["2021-01-15", "USA"]
    states = raw("USA", "2021-01-15")
    before = raw("USA", "2021-01-14")
    assert day["confirmed"] == pc.sum(states["confirmed"]).as_py()
    assert day["new_cases"] == day["confirmed"] - pc.sum(before["confirmed"]).as_py()
    assert day["regions"] == states.num_rows and day["regions_changed"] is False
    week = [by_key[str(dt.date(2021, 1, 15) - dt.timedelta(days=n)), "USA"] for n in range(7)]
    assert day["new_cases_7d_avg"] == pytest.approx(sum(d["new_cases"] for d in week) / 7)
    assert day["population"] == 329466283
    assert day["cases_7d_per_100k"] == pytest.approx(
        sum(d["new_cases"] for d in week) / 329466283 * 100_000
    )


def test_country_daily_world_week_keeps_ships_without_population() -> None:
    """ALL in April 2020: 180-odd codes a day; the ships and later countries get no rate."""
    made = roll("", ["2020-04-10", "2020-04-11"])
    by_key = rows(made)
    assert len({iso for _day, iso in by_key}) > 180
    ship = by_key["2020-04-10", "NA-SHIP-DP"]
    assert ship["population"] is None and ship["cases_7d_per_100k"] is None
    assert ship["new_cases_7d_avg"] is not None
    assert checks.sums_match_raw(made).passed
    assert checks.population_from_lookup(made, POPULATIONS).passed
    codes = made[0].table["iso"].to_pylist()
    assert codes == sorted(codes)  # one row per code, in code order


def test_country_daily_the_same_provinces_in_another_order_are_no_change() -> None:
    """Regions are compared as sets: the rows' order, or a row repeated, change nothing."""
    first = table("2021-03-01", {"North": (60, 6, 60, 6), "South": (44, 5, 44, 5)})
    second = table("2021-03-02", {"South": (45, 5, 1, 0), "North": (61, 6, 1, 0)})
    days = {"2021-03-01": first, "2021-03-02": pa.concat_tables([second, second.slice(0, 1)])}
    made = list(country_daily.roll_up(days.items(), set(days), {}))
    after = rows(made)["2021-03-02", "AAA"]
    assert (after["regions"], after["regions_changed"]) == (2, False)
    # The repeated row is counted twice in the sums, and that check says so.
    assert list(checks.sums_match_raw(made).failing_days) == ["2021-03-02"]


def table(day: str, regions: dict[str, tuple[int, int, int, int]]) -> pa.Table:
    """A raw day of country AAA: {province: (confirmed, deaths, confirmed_diff, deaths_diff)}."""
    return pa.table(
        {
            "iso": ["AAA"] * len(regions),
            "country": ["A"] * len(regions),
            "province": list(regions),
            "confirmed": [v[0] for v in regions.values()],
            "deaths": [v[1] for v in regions.values()],
            "confirmed_diff": [v[2] for v in regions.values()],
            "deaths_diff": [v[3] for v in regions.values()],
        }
    )


def test_country_daily_a_province_appearing_counts_once_and_a_correction_stays_negative() -> None:
    days = {
        "2021-03-01": table("2021-03-01", {"": (100, 10, 5, 1)}),
        # The country row gives way to two provinces of 104 in all: 4 new cases, not 104.
        "2021-03-02": table("2021-03-02", {"North": (60, 6, 60, 6), "South": (44, 5, 44, 5)}),
        # A correction: South loses 3 cases.
        "2021-03-03": table("2021-03-03", {"North": (61, 6, 1, 0), "South": (41, 5, -3, 0)}),
    }
    made = list(country_daily.roll_up(days.items(), set(days), {"AAA": 1000}))
    by_key = rows(made)
    first, second, third = (by_key[day, "AAA"] for day in days)
    assert (first["new_cases"], first["regions_changed"]) == (5, None)  # no day before: API's
    assert (second["new_cases"], second["api_new_cases"], second["regions_changed"]) == (
        4,
        104,
        True,
    )
    assert (third["new_cases"], third["api_new_cases"], third["regions_changed"]) == (-2, -2, False)
    assert third["days_in_average"] == 3
    assert third["new_cases_7d_avg"] == pytest.approx((5 + 4 - 2) / 7)
    outcome, changed = checks.new_counts_match_api(made)
    assert outcome.passed and changed == 1


def test_country_daily_a_missing_day_falls_back_to_the_api_and_shortens_the_average() -> None:
    days = {
        "2021-03-01": table("2021-03-01", {"": (100, 10, 5, 1)}),
        "2021-03-02": None,  # no file: skipped by the API, or not backfilled
        "2021-03-03": table("2021-03-03", {"": (110, 11, 7, 1)}),
    }
    made = list(country_daily.roll_up(days.items(), set(days), {}))
    assert [day.table.num_rows for day in made] == [1, 0, 1] and made[1].raw is None
    third = rows(made)["2021-03-03", "AAA"]
    assert (third["new_cases"], third["regions_changed"], third["days_in_average"]) == (7, None, 2)
    assert third["population"] is None and third["cases_7d_per_100k"] is None


def test_country_daily_streams_holding_a_block_not_the_history() -> None:
    """Each day is made once its block of raw days is read: never more is read ahead."""
    read: list[str] = []
    wanted = [day.isoformat() for day in day_range(dt.date(2021, 1, 1), dt.date(2021, 1, 31))]

    def stream() -> Iterator[tuple[str, pa.Table | None]]:
        for day in country_daily.input_days(wanted):
            read.append(day)
            yield day, table(day, {"": (len(read), 0, 1, 0)})

    made = 0
    for day in country_daily.roll_up(stream(), set(wanted), {}):
        ahead = dt.date.fromisoformat(read[-1]) - dt.date.fromisoformat(day.day)
        assert dt.timedelta(0) <= ahead < dt.timedelta(days=country_daily.BLOCK_DAYS)
        made += 1
    assert made == len(wanted)


def test_country_daily_input_days_are_each_day_and_the_seven_before() -> None:
    assert country_daily.input_days(["2021-01-10", "2021-01-20"]) == [
        *(f"2021-01-{n:02d}" for n in range(3, 11)),
        *(f"2021-01-{n:02d}" for n in range(13, 21)),
    ]


def test_country_daily_checks_catch_a_broken_roll_up(usa_history) -> None:
    """Each check fails, naming the day, when its invariant is broken."""
    week = usa_history[400:410]
    target = week[-1]

    def broken(column: str, value: object) -> list[country_daily.CountryDay]:
        changed = target.table.set_column(
            target.table.schema.get_field_index(column),
            target.table.schema.field(column),
            pa.array([value], target.table.schema.field(column).type),
        )
        return [*week[:-1], dataclasses.replace(target, table=changed)]

    assert not checks.sums_match_raw(broken("confirmed", 1)).passed
    assert target.day in checks.new_counts_match_api(broken("new_cases", -1))[0].failing_days
    averages = checks.averages_match_daily_values(broken("new_cases_7d_avg", 1.5))
    assert list(averages.failing_days) == [target.day]
    assert averages.failing_days[target.day].startswith("USA: new_cases_7d_avg 1.5, the week's")
    nulled = checks.averages_match_daily_values(broken("new_deaths_7d_avg", None))
    assert "USA: new_deaths_7d_avg None" in nulled.failing_days[target.day]
    unrated = checks.averages_match_daily_values(broken("cases_7d_per_100k", 0.5))
    assert "USA: cases_7d_per_100k 0.5, expected" in unrated.failing_days[target.day]
    assert not checks.population_from_lookup(broken("population", 1), POPULATIONS).passed
    assert not checks.population_from_lookup(broken("population", None), POPULATIONS).passed
