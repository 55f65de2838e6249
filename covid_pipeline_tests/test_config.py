"""Settings come from the environment, validated together, with every problem named."""

import dataclasses
from pathlib import Path

import pytest

from covid_pipeline.core import config
from covid_pipeline.core.config import Settings, load_settings, normalise_prefix
from covid_pipeline.core.dates import day_range, parse_day
from covid_pipeline.core.errors import ConfigError
from covid_pipeline.resources import CovidApiResource
from covid_pipeline_tests.support import settings_docs


def test_config_defaults_work_offline_into_the_local_warehouse() -> None:
    settings = load_settings({})
    assert settings.api_url == "https://covid-api.com/api"
    assert (settings.iso_code, settings.bucket_name) == ("USA", None)
    assert settings.prefix == "covid_daily_reports/usa"
    assert settings.storage_root == "warehouse/covid_daily_reports/usa"


def test_config_reads_every_variable() -> None:
    settings = load_settings(
        {
            "API_URL": "http://127.0.0.1:8000/api/",
            "ISO_CODE": "can",
            "BUCKET_NAME": "my-data-lake",
            "PREFIX": "/raw/covid/",
            "FETCH_CONCURRENCY": "16",
            "HTTP_READ_TIMEOUT": "2.5",
        }
    )
    assert settings.api_url == "http://127.0.0.1:8000/api"
    assert settings.iso_code == "CAN"
    assert settings.prefix == "raw/covid"  # leading and trailing slashes are normalised away
    assert settings.storage_root == "s3://my-data-lake/raw/covid"
    assert (settings.fetch_concurrency, settings.http_read_timeout_s) == (16, 2.5)


@pytest.mark.reliability(
    "Bad input",
    "several bad variables at once (API_URL ftp://, ISO_CODE with a path, a bad bucket, PREFIX "
    "with '..', a non-number, a number out of range)",
    "one ConfigError listing every problem, at definitions load",
)
def test_config_lists_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(
            {
                "API_URL": "ftp://example.com",
                "ISO_CODE": "US/../x",
                "BUCKET_NAME": "My_Bucket",
                "PREFIX": "a/../b",
                "FETCH_CONCURRENCY": "many",
                "HTTP_MAX_RETRIES": "99",
            }
        )
    message = str(error.value)
    for name in (
        "API_URL",
        "ISO_CODE",
        "BUCKET_NAME",
        "PREFIX",
        "FETCH_CONCURRENCY",
        "HTTP_MAX_RETRIES",
    ):
        assert name in message


@pytest.mark.reliability(
    "Bad input",
    "PREFIX with '..', '.', empty segments ('//'), a space, a date= folder, or only slashes",
    "refused with a message naming the rule (every entry point reads PREFIX through this)",
)
@pytest.mark.parametrize("prefix", ["a//b", "..", "a/./b", "a b", "x/date=2021-01-01", "///"])
def test_config_refuses_prefixes_that_blur_the_layout(prefix: str) -> None:
    assert normalise_prefix(prefix)[1] is not None
    with pytest.raises(ConfigError, match="PREFIX"):
        load_settings({"PREFIX": prefix})


@pytest.mark.reliability(
    "Bad input",
    "PREFIX with leading or trailing slashes ('/lake/usa/')",
    "normalised to 'lake/usa': keys never start with '/' or hold '//'",
)
def test_config_normalises_a_prefix_with_outer_slashes() -> None:
    assert load_settings({"PREFIX": "/lake/usa/"}).prefix == "lake/usa"


@pytest.mark.reliability(
    "Bad input",
    "an invalid BUCKET_NAME (too short, s3:// given, uppercase, '..', an IP address, a dash first)",
    "refused at load with the S3 naming rules",
)
@pytest.mark.parametrize("bucket", ["ab", "s3://bucket", "UPPER", "a..b", "192.168.1.1", "-dash"])
def test_config_refuses_invalid_bucket_names(bucket: str) -> None:
    with pytest.raises(ConfigError, match="BUCKET_NAME"):
        load_settings({"BUCKET_NAME": bucket})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2021-02-30", "is not a YYYY-MM-DD date"),
        ("2021/01/01", "is not a YYYY-MM-DD date"),
        ("20210101", "is not a YYYY-MM-DD date"),
        ("2020-01-21", "outside the data's range 2020-01-22..2023-03-09"),
        ("2023-03-10", "outside the data's range"),
    ],
)
def test_dates_refuse_days_that_cannot_have_data(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_day(text, "start_date")


def test_dates_range_includes_both_ends_and_refuses_reversed_ranges() -> None:
    days = day_range(parse_day("2020-02-27"), parse_day("2020-03-01"))
    assert [d.isoformat() for d in days] == ["2020-02-27", "2020-02-28", "2020-02-29", "2020-03-01"]
    with pytest.raises(ValueError, match="before start"):
        day_range(parse_day("2020-03-01"), parse_day("2020-02-27"))


@pytest.mark.parametrize(
    ("env", "mode"),
    [
        ({}, "local"),
        ({"BUCKET_NAME": "lake"}, "glue_partitions"),
        ({"BUCKET_NAME": "lake", "GLUE_CRAWLER_NAME": "covid-daily-reports"}, "glue_crawler"),
        (
            {"BUCKET_NAME": "lake", "GLUE_CRAWLER_NAME": "c", "CATALOG_MODE": "glue_partitions"},
            "glue_partitions",
        ),
        ({"BUCKET_NAME": "lake", "CATALOG_MODE": "local"}, "local"),
    ],
)
def test_config_catalog_mode_follows_bucket_and_crawler(env: dict[str, str], mode: str) -> None:
    assert load_settings(env).catalog_mode == mode


def test_config_catalog_names_default_per_country() -> None:
    settings = load_settings({"ISO_CODE": "CAN", "WAREHOUSE_DIR": "/data"})
    assert (settings.glue_database, settings.glue_table) == ("covid", "covid_daily_reports_can")
    assert settings.catalog_path == "/data/catalog.duckdb"
    assert (settings.country_daily_prefix, settings.country_daily_table) == (
        "covid_country_daily/can",
        "covid_country_daily_can",
    )


@pytest.mark.parametrize(
    "env",
    [
        {"PREFIX": "lake/usa", "COUNTRY_DAILY_PREFIX": "lake/usa"},
        {"PREFIX": "lake/usa", "COUNTRY_DAILY_PREFIX": "lake/usa/country_daily"},
        {"PREFIX": "lake/usa/raw", "COUNTRY_DAILY_PREFIX": "lake/usa"},
        {"PREFIX": "covid_country_daily/usa"},  # the country days' default folder
    ],
)
def test_config_refuses_a_country_daily_prefix_that_shares_the_raw_folder(env: dict) -> None:
    """A glob or a crawler of one table would read the other's files."""
    with pytest.raises(ConfigError, match=r"COUNTRY_DAILY_PREFIX .* must be a folder of its own"):
        load_settings(env)
    assert load_settings({"PREFIX": "lake/usa", "COUNTRY_DAILY_PREFIX": "lake/usa_days"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CATALOG_MODE": "glue_partitions"}, "CATALOG_MODE glue_partitions needs BUCKET_NAME"),
        ({"BUCKET_NAME": "lake", "CATALOG_MODE": "glue_crawler"}, "needs GLUE_CRAWLER_NAME"),
        ({"CATALOG_MODE": "hive"}, "CATALOG_MODE 'hive' must be one of"),
        ({"GLUE_TABLE": "Covid-Reports"}, "GLUE_TABLE 'Covid-Reports' must be lowercase"),
        ({"ATHENA_OUTPUT_LOCATION": "/tmp/results"}, "must be an s3:// URI"),
    ],
)
def test_config_refuses_catalog_settings_that_cannot_work(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EXECUTION_MODE": "lambda", "BUCKET_NAME": "lake"}, "needs LAMBDA_FUNCTION_NAME"),
        ({"EXECUTION_MODE": "lambda", "LAMBDA_FUNCTION_NAME": "f"}, "needs BUCKET_NAME"),
        ({"EXECUTION_MODE": "k8s"}, "EXECUTION_MODE 'k8s' must be local or lambda"),
        ({"LAMBDA_CHUNK_DAYS": "90"}, "LAMBDA_CHUNK_DAYS 90 must be between 1 and 60"),
    ],
)
def test_config_refuses_fanout_settings_that_cannot_work(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


@pytest.mark.parametrize(("text", "workers"), [("auto", None), ("AUTO", None), ("0", 0), ("3", 3)])
def test_config_cpu_workers_is_a_number_or_auto(text: str, workers: int | None) -> None:
    assert load_settings({"CPU_WORKERS": text}).cpu_workers == workers


def test_config_cpu_workers_refuses_anything_else() -> None:
    with pytest.raises(ConfigError, match="CPU_WORKERS 'many' must be a whole number or auto"):
        load_settings({"CPU_WORKERS": "many"})


@pytest.mark.parametrize(
    ("text", "label", "prefix", "table"),
    [
        ("usa", "USA", "covid_daily_reports/usa", "covid_daily_reports_usa"),
        ("USA,CAN", "CAN,USA", "covid_daily_reports/can_usa", "covid_daily_reports_can_usa"),
        (
            " can , usa,CAN ",
            "CAN,USA",
            "covid_daily_reports/can_usa",
            "covid_daily_reports_can_usa",
        ),
        ("all", "ALL", "covid_daily_reports/all", "covid_daily_reports_all"),
    ],
)
def test_config_iso_code_is_a_code_a_list_or_all(
    text: str, label: str, prefix: str, table: str
) -> None:
    settings = load_settings({"ISO_CODE": text})
    # Order and duplicates do not matter: one set, one label, one prefix and table of its own.
    assert (settings.iso_code, settings.prefix, settings.glue_table) == (label, prefix, table)
    assert settings.countries.label == label


@pytest.mark.reliability(
    "Bad input",
    "ISO_CODE with an entry that is not a code (USA,U$A), an empty entry, or ALL mixed with codes",
    "refused at load, naming each bad entry and the accepted forms",
)
@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("USA,U$A", "'U$A' is not a code"),
        ("USA,,CAN", "'' is not a code"),
        ("ALL,USA", "ALL cannot be mixed with codes"),
        ("USA&iso=CAN", "'USA&ISO=CAN' is not a code"),
    ],
)
def test_config_iso_code_refuses_what_is_not_a_country_set(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({"ISO_CODE": text})
    assert "must be ALL, or the API's region codes separated by commas" in str(error.value)
    assert problem in str(error.value)


ROOT = Path(__file__).resolve().parent.parent


def test_config_each_default_lives_only_in_the_table() -> None:
    """Each default once: Settings, the resources and the core take theirs from the table."""
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    fields.pop("from_environment")
    described = {v.attribute: v for v in config.VARIABLES if v.attribute is not None}
    assert set(described) == set(fields)  # every setting has a variable, every variable a setting
    for attribute, field in fields.items():
        variable = described[attribute]
        unset = not variable.default or (variable.auto and variable.default == "auto")
        if unset:  # a value the variable may leave unset: None, or "" to be derived
            assert field.default in (None, ""), attribute
        else:  # a real default: only in the table, parsed by load_settings
            assert field.default is dataclasses.MISSING, attribute
            parsed = load_settings({variable.name: variable.default})
            assert getattr(parsed, attribute) == getattr(load_settings({}), attribute)
    api = CovidApiResource(api_url="http://127.0.0.1/api", iso_code="USA")
    defaults = load_settings({})
    assert (api.fetch_concurrency, api.max_retries, api.backoff_s) == (
        defaults.fetch_concurrency, defaults.http_max_retries, defaults.http_backoff_s
    )  # fmt: skip


@pytest.mark.parametrize(
    "variable", [v for v in config.VARIABLES if v.low is not None], ids=lambda v: v.name
)
def test_config_table_bounds_are_enforced(variable: config.Variable) -> None:
    assert variable.low is not None and variable.high is not None
    for outside in (variable.low - 1, variable.high + 1):
        text = str(int(outside)) if variable.kind is int else str(outside)
        with pytest.raises(ConfigError, match=f"{variable.name} .* must be between"):
            load_settings({variable.name: text})


def test_config_env_example_is_written_from_the_table() -> None:
    assert (ROOT / ".env.example").read_text() == settings_docs.env_example(), (
        "run make env-example"
    )


def test_config_readme_table_is_written_from_the_table() -> None:
    assert settings_docs.readme_table() in (ROOT / "README.md").read_text(), "run make env-example"


def test_config_reports_variables_read_verbatim_for_dagster_env_vars(
    bare_environment: pytest.MonkeyPatch,
) -> None:
    monkeypatch = bare_environment
    monkeypatch.setenv("FETCH_CONCURRENCY", "16")
    monkeypatch.setenv("PREFIX", "/lake/usa/")  # normalised: passed as its value, not the variable
    monkeypatch.setenv("API_URL", "http://127.0.0.1:8000/api")
    settings = load_settings()
    assert settings.from_environment == {
        "fetch_concurrency": "FETCH_CONCURRENCY",
        "api_url": "API_URL",
    }
    assert load_settings({"FETCH_CONCURRENCY": "16"}).from_environment == {}
