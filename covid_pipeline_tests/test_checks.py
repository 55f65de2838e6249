"""Data checks name the days that fail them."""

import datetime as dt

import pyarrow as pa
from covid_pipeline_replay import jhu

from covid_pipeline.core.schema import checks
from covid_pipeline.core.schema.transform import to_table

DAY = dt.date(2020, 4, 16)


def canada(day: dt.date = DAY) -> pa.Table:
    return to_table(day, jhu.reports("CAN", day))


def test_checks_pass_on_real_data() -> None:
    tables = {"2020-04-15": canada(DAY - dt.timedelta(days=1)), "2020-04-16": canada()}
    for outcome in (
        checks.schema_as_documented(tables),
        checks.cumulative_counts_non_negative(tables),
        checks.names_present(tables, "CAN"),
        checks.row_count_steady({day: table.num_rows for day, table in tables.items()}),
    ):
        assert outcome.passed, outcome
        assert outcome.checked_days == 2


def test_checks_find_negative_cumulative_counts() -> None:
    table = canada()
    confirmed = table["confirmed"].to_pylist()
    confirmed[0] = -5
    broken = table.set_column(
        table.schema.get_field_index("confirmed"),
        table.schema.field("confirmed"),
        pa.array(confirmed),
    )
    outcome = checks.cumulative_counts_non_negative({"2020-04-16": broken})
    assert outcome.failing_days == {"2020-04-16": "confirmed negative in 1 rows"}


def test_checks_find_rows_of_another_country() -> None:
    outcome = checks.names_present({"2020-04-16": canada()}, "USA")
    assert outcome.failing_days == {
        "2020-04-16": "14 rows with another iso, 0 without a country name"
    }


def test_checks_find_schema_drift() -> None:
    outcome = checks.schema_as_documented({"2020-04-16": canada().drop_columns(["cities"])})
    assert list(outcome.failing_days) == ["2020-04-16"]


def test_checks_flag_a_jump_in_row_count_but_not_skipped_days() -> None:
    outcome = checks.row_count_steady({"2020-04-14": 14, "2020-04-15": 0, "2020-04-16": 3})
    assert outcome.failing_days == {"2020-04-16": "3 rows against 14 on 2020-04-14"}


def test_checks_merge_per_day_failures_into_run_outcomes() -> None:
    failures = {
        "2020-04-15": {"names_present": "1 rows with another iso, 0 without a country name"}
    }
    rows = {"2020-04-14": 14, "2020-04-15": 14, "2020-04-16": 2}
    outcomes = {o.name: o for o in checks.merge(failures, rows, "CAN")}
    assert list(outcomes) == [
        "schema_as_documented",
        "cumulative_counts_non_negative",
        "names_present",
        "row_count_steady",
    ]
    assert outcomes["schema_as_documented"].passed
    assert list(outcomes["names_present"].failing_days) == ["2020-04-15"]
    assert outcomes["row_count_steady"].failing_days == {
        "2020-04-16": "2 rows against 14 on 2020-04-15"
    }
    assert all(o.checked_days == 3 for o in outcomes.values())


def test_checks_ignore_a_small_absolute_change_in_row_count() -> None:
    # 1 -> 2 rows doubles, but a country that gains a province is not news; 14 -> 3 is.
    outcome = checks.row_count_steady({"2020-04-14": 1, "2020-04-15": 2, "2020-04-16": 9})
    assert outcome.passed
    outcome = checks.row_count_steady({"2020-04-15": 25, "2020-04-16": 12})
    assert outcome.failing_days == {"2020-04-16": "12 rows against 25 on 2020-04-15"}
