"""The Dagster UI in a real browser, as a person uses it: backfill a range, then stop one.

Debian's Chromium, driven by Playwright from PyPI (never `playwright install`: browser
downloads are not reachable), against `dagster dev` (webserver and daemon) and the replay API:

1. open the daily asset, launch a backfill of a week through the *Materialize* dialog, wait
   for it to complete, check the files and the asset's partition bar, and check that the
   catalog followed by itself: one catalog run, launched by the project's automation sensor;
   then that the country days followed, and open the summary's chart of them;
2. launch a slow backfill, open its run, press *Terminate*, and check that the run ends
   canceled within the bound, with whole files only, each one recorded as materialized.

On failure a screenshot of the page is saved beside the test's temporary files.
"""

import datetime as dt
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from covid_pipeline_replay.server import ReplayServer

from covid_pipeline.core.catalog import duckdb_catalog
from covid_pipeline.core.dates import day_range
from covid_pipeline.core.lake import stores
from covid_pipeline_tests.support.deployment import DagsterDev, run_events
from covid_pipeline_tests.support.lake import assert_days_match_replay

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
PREFIX = "covid_daily_reports/usa"
WEEK = [str(day) for day in day_range(dt.date(2021, 1, 1), dt.date(2021, 1, 7))]
# The country days a week of raw days feeds: each day and the seven after it.
FED_BY_WEEK = [str(day) for day in day_range(dt.date(2021, 1, 1), dt.date(2021, 1, 14))]
COUNTRY_PREFIX = "covid_country_daily/usa"
COUNTRY_DAILY = dg.AssetKey("covid_country_daily")
FOLLOWER = "covid_follows_new_days"  # the project's automation sensor
STOP_BOUND_S = 10.0  # from the click on Terminate to a canceled run
DAEMON_S = 180  # the daemon ticks every 30 s: a backfill starts within a minute or so


@pytest.fixture
def page(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator["playwright.Page"]:
    """A page in headless Chromium; a screenshot is saved when the test fails with it open."""
    if not Path(CHROMIUM).exists():
        message = "Chromium is not installed: apt-get install chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        yield page
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            shot = tmp_path / "failure.png"
            page.screenshot(path=str(shot), full_page=True)
            sys.stderr.write(f"screenshot of the page at the failure: {shot}\n")
        browser.close()


def launch_backfill(page: "playwright.Page", dev: DagsterDev, days: str) -> str:
    """Open the asset, launch a backfill of `days` from the Materialize dialog; its page URL."""
    page.goto(f"{dev.url}/assets/covid_daily_reports")
    skip = page.get_by_role("button", name="Skip")  # Dagster's community prompt, first visit
    try:
        skip.wait_for(timeout=3000)
        skip.click()
    except playwright.TimeoutError:
        pass
    page.get_by_role("button", name="Materialize…").click()
    dialog = page.get_by_role("dialog")
    selection = dialog.get_by_placeholder("ex: 2020-01-22", exact=False)
    selection.fill(days)
    selection.press("Enter")
    dialog.get_by_role("button", name="Launch backfill").click()
    page.get_by_text("Created backfill").wait_for()
    page.get_by_role("link", name="View", exact=True).click()
    page.wait_for_url(re.compile(r"/runs/b/\w+"))
    return page.url.split("?")[0]


def open_its_run(page: "playwright.Page", backfill_url: str) -> None:
    """Wait for the daemon to launch the backfill's one run, and open that run's page."""
    deadline = time.monotonic() + DAEMON_S
    page.goto(f"{backfill_url}?tab=runs")
    page.wait_for_timeout(2000)  # the table fills in after the page loads
    while not (runs := _run_links(page)):
        assert time.monotonic() < deadline, "the daemon never launched the backfill's run"
        page.reload()
        page.wait_for_timeout(2000)
    page.goto(f"{page.url.split('/runs/')[0]}{runs[0]}")


def _run_links(page: "playwright.Page") -> list[str]:
    hrefs = [a.get_attribute("href") or "" for a in page.locator("a[href^='/runs/']").all()]
    return [href for href in hrefs if re.fullmatch(r"/runs/[0-9a-f-]{36}", href)]


def run_status(page: "playwright.Page") -> str:
    """The status tag in the run page's header (Started, Success, Failure, Canceled, ...)."""
    header = page.locator("text=/^(Queued|Starting|Started|Success|Failure|Canceling|Canceled)$/")
    return header.first.inner_text()


def wait_for_status(page: "playwright.Page", wanted: set[str], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while (status := run_status(page)) not in wanted:
        assert time.monotonic() < deadline, f"the run is still {status}"
        page.wait_for_timeout(250)
    return status


def catalog_runs(dev: DagsterDev) -> list[dg.DagsterRun]:
    """The runs of the catalog asset, newest first."""
    with dev.instance() as instance:
        return [
            run
            for run in instance.get_runs()
            if run.asset_selection == {dg.AssetKey("covid_catalog_table")}
        ]


def materialized_partitions(dev: DagsterDev, asset: str) -> list[str | None]:
    """The partitions of `asset` materialized so far (None for an unpartitioned asset)."""
    with dev.instance() as instance:
        records = instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
    return sorted({record.partition_key for record in records}, key=str)


def landed(dev: DagsterDev) -> list[str]:
    return list(stores.LocalStore(dev.warehouse).days(PREFIX))


def test_browser_backfill_then_terminate(
    page: "playwright.Page", dagster_dev: DagsterDev, replay: ReplayServer
) -> None:
    dev = dagster_dev

    # 1. A week, through the Materialize dialog; the catalog follows by itself.
    backfill = launch_backfill(page, dev, f"[{WEEK[0]}...{WEEK[-1]}]")
    open_its_run(page, backfill)
    assert wait_for_status(page, {"Success", "Failure"}, DAEMON_S) == "Success"
    assert landed(dev) == WEEK
    assert_days_match_replay(stores.LocalStore(dev.warehouse), PREFIX, WEEK)
    page.goto(f"{dev.url}/assets/covid_daily_reports?view=partitions")
    page.get_by_text(f"Materialized ({len(WEEK)})").wait_for()  # the partition bar
    page.get_by_text("Failed (0)").wait_for()

    deadline = time.monotonic() + DAEMON_S
    page.goto(f"{dev.url}/runs")
    page.wait_for_timeout(2000)
    while not page.get_by_text(FOLLOWER).count():  # "Launched by"
        assert time.monotonic() < deadline, "the catalog never followed the backfill"
        page.reload()
        page.wait_for_timeout(3000)
    while (catalog := catalog_runs(dev))[0].status != dg.DagsterRunStatus.SUCCESS:
        assert time.monotonic() < deadline, f"the catalog run is {catalog[0].status}"
        page.wait_for_timeout(1000)
    assert len(catalog) == 1, f"{len(catalog)} catalog runs"  # once, not once per day
    assert catalog[0].tags.get("dagster/sensor_name") == FOLLOWER
    _, rows = duckdb_catalog.query(
        dev.warehouse / "catalog.duckdb", "select count(distinct date) from covid_daily_reports_usa"
    )
    assert rows == [(len(WEEK),)]

    # The reporting assets followed too: the country days the week feeds (D..D+7), then the
    # summary, whose chart a person opens from the asset's metadata.
    while not materialized_partitions(dev, "covid_country_daily_summary"):
        assert time.monotonic() < deadline + DAEMON_S, "the summary never followed the backfill"
        page.wait_for_timeout(2000)
    assert materialized_partitions(dev, "covid_country_daily") == FED_BY_WEEK
    with dev.instance() as instance:
        events = instance.fetch_materializations(COUNTRY_DAILY, limit=1000)
        runs = [r for r in instance.get_runs() if COUNTRY_DAILY in (r.asset_selection or ())]
    assert len(events.records) == len(FED_BY_WEEK)  # each country day once, none twice
    assert len(runs) == 1  # the week's fourteen country days: one run
    assert (
        list(stores.LocalStore(dev.warehouse).days(COUNTRY_PREFIX)) == WEEK
    )  # the rest: no raw day
    page.goto(f"{dev.url}/assets/covid_country_daily_summary")
    page.get_by_text("[Show Markdown]").click()
    chart = page.get_by_role("dialog").get_by_role("img", name=re.compile("USA new cases"))
    width, height = chart.evaluate("image => [image.naturalWidth, image.naturalHeight]")
    assert (width, height) == (800, 480)  # the PNG decoded and drawn by the browser
    page.get_by_role("dialog").get_by_role("button", name="Close").click()

    # 2. A slow backfill of ten months, stopped with Terminate once a few days have landed.
    replay.latency_s = 0.5
    backfill = launch_backfill(page, dev, "[2020-03-01...2020-12-31]")
    open_its_run(page, backfill)
    run_id = page.url.rsplit("/", 1)[-1]
    deadline = time.monotonic() + DAEMON_S
    while len(landed(dev)) < len(WEEK) + 8:
        assert time.monotonic() < deadline, "no day of the slow backfill landed"
        page.wait_for_timeout(250)
    page.get_by_role("button", name="Terminate").click()
    page.get_by_role("dialog").get_by_role("button", name="Terminate 1 run").click()
    clicked = time.monotonic()
    assert wait_for_status(page, {"Canceled", "Failure", "Success"}, 60) == "Canceled"
    took = time.monotonic() - clicked
    sys.stderr.write(f"Terminate: the run was canceled {took:.1f}s after the click\n")
    assert took < STOP_BOUND_S, f"Terminate took {took:.1f}s to end the run"

    written = landed(dev)
    assert len(WEEK) < len(written) < len(WEEK) + 306 / 2  # stopped early
    assert_days_match_replay(stores.LocalStore(dev.warehouse), PREFIX, written)
    leftovers = [p for p in dev.warehouse.rglob("*") if p.is_file() and p.suffix != ".parquet"]
    assert [p for p in leftovers if p.name != "catalog.duckdb"] == []
    with dev.instance() as instance:
        kinds, materialized = run_events(instance, run_id)
    assert materialized == [day for day in written if day not in WEEK]
    assert kinds.count("STEP_START") == 1  # not retried
