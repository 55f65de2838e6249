"""The replay API answers like covid-api.com, with the contract's verified numbers."""

import datetime as dt

import pytest
import requests
from covid_pipeline_replay import jhu
from covid_pipeline_replay.server import Fault, ReplayServer


def _region(records: list[dict], province: str) -> dict:
    return next(r for r in records if r["region"]["province"] == province)


def test_replay_matches_captured_ontario_response() -> None:
    # Captured verbatim from covid-api.com (docs/covid_api_contract.md, section 6).
    ontario = _region(jhu.reports("CAN", dt.date(2020, 4, 16)), "Ontario")
    assert ontario == {
        "date": "2020-04-16", "confirmed": 9840, "deaths": 490, "recovered": 0,
        "confirmed_diff": 1393, "deaths_diff": 105, "recovered_diff": 0,
        "last_update": "2020-04-16 23:38:03", "active": 9350, "active_diff": 1288,
        "fatality_rate": 0.0498,
        "region": {"iso": "CAN", "name": "Canada", "province": "Ontario",
                   "lat": "51.2538", "long": "-85.3232", "cities": []},
    }  # fmt: skip


def test_replay_nests_us_counties_as_cities() -> None:
    delaware = _region(jhu.reports("USA", dt.date(2021, 1, 15)), "Delaware")
    assert (delaware["confirmed"], delaware["deaths"], delaware["confirmed_diff"]) == (
        68727,
        1182,
        662,
    )
    assert delaware["last_update"] == "2021-01-16 05:22:40"
    assert [(c["name"], c["fips"]) for c in delaware["region"]["cities"]] == [
        ("Kent", 10001),
        ("New Castle", 10003),
        ("Sussex", 10005),
        ("Unassigned", 90010),
    ]


def test_replay_falls_back_to_the_time_series_for_late_days() -> None:
    [switzerland] = jhu.reports("CHE", dt.date(2023, 3, 9))
    assert (switzerland["confirmed"], switzerland["deaths"], switzerland["deaths_diff"]) == (
        4413911,
        14210,
        1,
    )
    assert switzerland["fatality_rate"] == 0.0032


def test_replay_has_no_data_outside_the_history() -> None:
    assert jhu.reports("USA", dt.date(2020, 1, 21)) == []
    assert jhu.reports("USA", dt.date(2023, 3, 10)) == []


def test_replay_rejects_a_malformed_date_like_laravel(replay: ReplayServer) -> None:
    response = requests.get(f"{replay.url}/reports", params={"date": "2021-13-01", "iso": "USA"})
    assert response.status_code == 422
    assert "date" in response.json()["errors"]


def test_replay_paginates_like_laravel(replay: ReplayServer) -> None:
    params = {"date": "2020-04-16", "iso": "CAN", "per_page": 5}
    first = requests.get(f"{replay.url}/reports", params=params, timeout=5).json()
    assert (first["current_page"], first["last_page"], first["total"]) == (1, 3, 14)
    assert len(first["data"]) == 5
    last = requests.get(first["last_page_url"], timeout=5).json()
    assert last["next_page_url"] is None and len(last["data"]) == 4


@pytest.mark.parametrize("kind", ["empty", "drop_field", "string_numbers", "null_counts"])
def test_replay_fault_applies_only_to_its_days_and_times(replay: ReplayServer, kind: str) -> None:
    replay.set_faults([Fault(kind=kind, dates=["2020-04-16"], times=1)])  # type: ignore[arg-type]
    params = {"date": "2020-04-16", "iso": "CAN"}
    faulty = requests.get(f"{replay.url}/reports", params=params, timeout=5).json()["data"]
    clean = requests.get(f"{replay.url}/reports", params=params, timeout=5).json()["data"]
    assert faulty != clean
    assert clean == jhu.reports("CAN", dt.date(2020, 4, 16))
    assert replay.stats()["requests"] == 2


def test_replay_faults_can_be_set_over_http(replay: ReplayServer) -> None:
    rules = [{"kind": "status", "status": 503, "times": 1}]
    assert requests.put(f"{replay.url[:-4]}/_replay/faults", json=rules, timeout=5).ok
    params = {"date": "2020-04-16", "iso": "CAN"}
    assert requests.get(f"{replay.url}/reports", params=params, timeout=5).status_code == 503
    assert requests.get(f"{replay.url}/reports", params=params, timeout=5).status_code == 200
    stats = requests.get(f"{replay.url[:-4]}/_replay/stats", timeout=5).json()
    assert stats == {
        "requests": 2,
        "distinct_days": 1,
        "max_requests_per_day": 2,
        "faults_served": 1,
        "max_in_flight": 1,  # one request after the other
    }


def test_replay_volume_profile_serves_every_us_day_with_its_counties() -> None:
    with ReplayServer(profile="volume") as server:
        sizes = {}
        for day in ("2020-03-21", "2020-03-22", "2020-07-04", "2022-06-01", "2023-03-09"):
            response = requests.get(
                f"{server.url}/reports", params={"date": day, "iso": "USA"}, timeout=10
            )
            records = response.json()["data"]
            counties = sum(len(r["region"]["cities"]) for r in records)
            sizes[day] = (len(response.content), counties)
            # Re-dated: every record and county carries the day asked for.
            assert {r["date"] for r in records} == {day}
            assert {c["date"] for r in records for c in r["region"]["cities"]} <= {day}
        # The real API's volume from 2020-03-22 on: ~3,200 counties a day.
        for day in ("2020-03-22", "2020-07-04", "2022-06-01", "2023-03-09"):
            body, counties = sizes[day]
            assert 3_100 <= counties <= 3_300 and 600_000 <= body <= 750_000, (day, sizes[day])
        assert sizes["2020-03-21"][1] < 100  # before then, the fixture as it is
        # Other countries are served as in the fixture.
        params = {"date": "2020-04-16", "iso": "CAN"}
        canada = requests.get(f"{server.url}/reports", params=params, timeout=10).json()["data"]
        assert canada == jhu.reports("CAN", dt.date(2020, 4, 16))


def test_replay_serves_the_unfiltered_world_query_and_the_regions(replay: ReplayServer) -> None:
    day = "2020-04-16"
    world = requests.get(f"{replay.url}/reports", params={"date": day}, timeout=10).json()["data"]
    by_country: dict[str, list[dict]] = {}
    for record in world:
        by_country.setdefault(record["region"]["iso"], []).append(record)
    assert len(by_country) > 150
    # Each country's records are exactly what the filtered query answers for it.
    assert by_country["CAN"] == jhu.reports("CAN", dt.date(2020, 4, 16))
    assert by_country["USA"] == jhu.reports("USA", dt.date(2020, 4, 16))
    regions = requests.get(f"{replay.url}/regions", timeout=10).json()["data"]
    assert {"iso": "CAN", "name": "Canada"} in regions and {"iso": "USA", "name": "US"} in regions
    assert set(by_country) <= {region["iso"] for region in regions}
    assert replay.stats()["requests"] == 1  # /regions is not a day's request


def test_replay_volume_profile_gives_the_world_its_us_at_real_volume() -> None:
    with ReplayServer(profile="volume") as server:
        world = requests.get(f"{server.url}/reports", params={"date": "2022-06-01"}, timeout=30)
    records = world.json()["data"]
    usa = [r for r in records if r["region"]["iso"] == "USA"]
    assert sum(len(r["region"]["cities"]) for r in usa) > 3000
    assert len({r["region"]["iso"] for r in records}) > 150
