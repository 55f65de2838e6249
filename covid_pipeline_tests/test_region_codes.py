"""The API's own region codes (NA-SHIP-DP, GGY-JEY, Others, cruise): kept, backfilled, checked.

covid-api.com names ships, groupings and shared territories with codes that are not ISO 3166-1
alpha-3 (docs/covid_api_contract.md, GET /regions). The replay serves the two ships that JHU
lists without an iso3 under the API's codes; these tests backfill them for real.
"""

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest
import requests
from covid_pipeline_replay import jhu
from covid_pipeline_replay.server import ReplayServer

from covid_pipeline.core.config import load_settings
from covid_pipeline.core.dates import day_range
from covid_pipeline.core.engine.run import RangeOptions, run_range
from covid_pipeline.core.errors import ConfigError
from covid_pipeline.core.lake import day_files, stores
from covid_pipeline.core.schema import checks
from covid_pipeline.core.schema.transform import to_table
from covid_pipeline.core.source.countries import Countries
from covid_pipeline.core.source.retry import RetryPolicy
from covid_pipeline.definitions import build_definitions
from covid_pipeline_tests.support.api import api_client
from covid_pipeline_tests.support.deployment import materialize_days

SHIPS = {"NA-SHIP-DP": "Diamond Princess", "NA-SHIP-MSZ": "MS Zaandam"}
DAYS = day_range(dt.date(2020, 4, 14), dt.date(2020, 4, 16))  # both ships have cases then


def test_region_codes_of_the_api_are_in_the_replays_regions_and_world(
    replay: ReplayServer,
) -> None:
    regions = requests.get(f"{replay.url}/regions", timeout=10).json()["data"]
    assert all({"iso": code, "name": name} in regions for code, name in SHIPS.items())
    world = requests.get(f"{replay.url}/reports", params={"date": "2020-04-15"}, timeout=10)
    codes = {record["region"]["iso"] for record in world.json()["data"]}
    assert set(SHIPS) <= codes
    # Asked for by its code, in any case, a ship answers with its own records alone.
    for code in ("NA-SHIP-DP", "na-ship-dp"):
        answer = requests.get(
            f"{replay.url}/reports", params={"date": "2020-04-15", "iso": code}, timeout=10
        ).json()["data"]
        assert [r["region"]["iso"] for r in answer] == ["NA-SHIP-DP"]
        assert answer == jhu.reports("NA-SHIP-DP", dt.date(2020, 4, 15))


def test_region_codes_a_world_backfill_keeps_them_and_names_present_passes(
    replay: ReplayServer, tmp_path: Path
) -> None:
    client = api_client(replay.url, "ALL", retry=RetryPolicy(max_retries=0, backoff_s=0))
    outcome = run_range(client, stores.LocalStore(tmp_path), "all", DAYS, RangeOptions(4, 4))
    assert not outcome.failed and sorted(outcome.written) == [str(day) for day in DAYS]
    store = stores.LocalStore(tmp_path)
    for day in outcome.written:
        written = day_files.read_day(store, "all", day)
        assert written is not None
        ships = {
            iso: country
            for iso, country in zip(
                written["iso"].to_pylist(), written["country"].to_pylist(), strict=True
            )
            if iso in SHIPS
        }
        assert ships == SHIPS, day  # kept as the API gave them, with their names
    results = {result.name: result for result in outcome.check_outcomes()}
    assert results["names_present"].passed, results["names_present"].failing_days
    assert outcome.check_failures == {}


def test_region_codes_one_ship_backfills_alone_with_one_request_a_day(
    replay: ReplayServer, tmp_path: Path
) -> None:
    env = {"API_URL": replay.url, "ISO_CODE": "na-ship-msz", "WAREHOUSE_DIR": str(tmp_path)}
    settings = load_settings(env)
    # Derived names stay plain: no hyphen reaches a path segment or an SQL identifier.
    assert (settings.iso_code, settings.prefix, settings.glue_table) == (
        "NA-SHIP-MSZ",
        "covid_daily_reports/na__ship__msz",
        "covid_daily_reports_na__ship__msz",
    )
    defs = build_definitions(settings)
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize_days(defs, "2020-04-14", "2020-04-16", instance=instance)
    assert result.success
    written = sorted((tmp_path / settings.prefix).glob("date=*/data.parquet"))
    assert [path.parent.name for path in written] == [f"date={day}" for day in DAYS]
    assert replay.stats()["requests"] == 3 and replay.stats()["max_requests_per_day"] == 1
    evaluations = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert evaluations["names_present"] is True


def test_region_codes_slugs_keep_a_code_apart_from_a_list() -> None:
    assert Countries.parse("GGY-JEY").slug == "ggy__jey"
    assert Countries.parse("GGY,JEY").slug == "ggy_jey"
    assert Countries.parse("others, CRUISE").label == "CRUISE,OTHERS"


@pytest.mark.reliability(
    "Bad input",
    "ISO_CODE entries with a slash, a quote, a space, '..', a leading hyphen, or 25 characters",
    "refused at load, naming each entry; nothing unsafe reaches a query, a path or a table",
)
@pytest.mark.parametrize(
    "entry", ["US/A", "USA'", "US A", "..", "-USA", "NA--SHIP", "A" * 25, "USA;DROP"]
)
def test_region_codes_refuse_unsafe_entries(entry: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({"ISO_CODE": f"USA,{entry}"})
    assert f"{entry.upper()!r} is not a code" in str(error.value)


def test_region_codes_names_present_under_all_wants_a_code_and_a_name() -> None:
    table = to_table(dt.date(2020, 4, 15), jhu.reports("NA-SHIP-DP", dt.date(2020, 4, 15)))
    assert checks.names_present({"2020-04-15": table}, "ALL").passed
    assert checks.names_present({"2020-04-15": table}, "na-ship-dp").passed
    nameless = table.set_column(table.schema.get_field_index("iso"), "iso", [[""]])
    outcome = checks.names_present({"2020-04-15": nameless}, "ALL")
    assert outcome.failing_days == {
        "2020-04-15": "1 rows with another iso, 0 without a country name"
    }


def test_region_codes_a_code_the_api_does_not_know_gives_days_without_data(
    replay: ReplayServer, tmp_path: Path
) -> None:
    client = api_client(replay.url, "XX-UNKNOWN", retry=RetryPolicy(max_retries=0, backoff_s=0))
    outcome = run_range(client, stores.LocalStore(tmp_path), "xx", DAYS, RangeOptions(2, 2))
    assert outcome.skipped == tuple(str(day) for day in DAYS)
    assert not outcome.written and not outcome.failed
