"""Settings: one table of every variable, read from the environment once, validated together.

`VARIABLES` is the one place a variable is described: its name, type, default, bounds and help.
`load_settings` reads and checks them all from it, so one bad value is reported together with every
other one, before anything is fetched or written; `.env.example` and the README's table are written
from it (`make env-example`, covid_pipeline_tests/support/settings_docs.py), and a test fails when
they disagree. Every entry point (the Dagster definitions, the Lambda handler, the query command)
calls `load_settings`, so a variable means the same thing everywhere. AWS credentials, region and
endpoint are not settings: boto3 reads them itself.
"""

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from covid_pipeline.core.catalog.refresh import CatalogTarget
from covid_pipeline.core.engine.run import RangeOptions
from covid_pipeline.core.errors import ConfigError
from covid_pipeline.core.lake.layout import DAY_FOLDERS, s3_uri
from covid_pipeline.core.lake.stores import LocalStore, S3Store, Store
from covid_pipeline.core.reporting import country_daily
from covid_pipeline.core.schema import transform
from covid_pipeline.core.source.api import CovidApiClient, api_url_problems
from covid_pipeline.core.source.countries import Countries
from covid_pipeline.core.source.retry import RetryPolicy

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9_=.-]+$")
_GLUE_NAME = re.compile(r"^[a-z0-9_]{1,255}$")
_CRAWLER_NAME = re.compile(r"^[A-Za-z0-9_. -]{1,255}$")

CATALOG_MODES = ("local", "glue_partitions", "glue_projection", "glue_crawler")
EXECUTION_MODES = ("local", "lambda")


# A variable's check: its value as given (stripped, not empty) -> (value to use, problems).
Parse = Callable[[str, str], tuple[Any, list[str]]]


@dataclass(frozen=True)
class Variable:
    """One environment variable: what it means, its type and bounds, its default.

    `attribute` is the Settings field it sets (None: read by another library, listed so the
    docs name it). `default` is what `.env.example` shows; "" means unset (derived or none).
    """

    name: str
    attribute: str | None
    help: str
    group: str
    default: str = ""
    example: str = ""
    kind: type = str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    auto: bool = False  # "auto" (any case) means the default
    check: Parse | None = None
    commented: bool = False  # shown commented out in .env.example (read by another library)


def _api_url(name: str, text: str) -> tuple[str, list[str]]:
    url = text.rstrip("/")
    return url, api_url_problems(url)


def _iso_code(name: str, text: str) -> tuple[str, list[str]]:
    try:
        return Countries.parse(text).label, []  # canonical: upper case, sorted, unique
    except ValueError as error:
        return text, [str(error)]


def _bucket(name: str, text: str) -> tuple[str, list[str]]:
    return text, _bucket_name_problems(text)


def _prefix(name: str, text: str) -> tuple[str, list[str]]:
    prefix, problem = normalise_prefix(text)
    return prefix, [problem] if problem else []


def _glue_name(name: str, text: str) -> tuple[str, list[str]]:
    if _GLUE_NAME.match(text):
        return text, []
    return text, [
        f"{name} {text!r} must be lowercase letters, digits and underscores "
        "(names Athena can query without quoting)"
    ]


def _crawler(name: str, text: str) -> tuple[str, list[str]]:
    ok = _CRAWLER_NAME.match(text)
    return text, [] if ok else [f"{name} {text!r} is not a valid crawler name"]


def _s3_uri(name: str, text: str) -> tuple[str, list[str]]:
    ok = text.startswith("s3://")
    return text, [] if ok else [f"{name} {text!r} must be an s3:// URI"]


_DESIGN, _LOCAL, _CATALOG = "The design's four", "Local storage", "Catalog"
_THROUGHPUT, _LAMBDA, _OTHERS = "Throughput and patience", "Lambda", "Read by other libraries"

VARIABLES: tuple[Variable, ...] = (
    Variable(
        "API_URL", "api_url",
        "Base URL of the COVID-19 Statistics API, or of the replay API (`make replay`): http or "
        "https, without user:password, ?query or #fragment. Certificates are always verified.",
        _DESIGN, default="https://covid-api.com/api", example="http://127.0.0.1:8000/api",
        check=_api_url,
    ),
    Variable(
        "ISO_CODE", "iso_code",
        "The regions: one of the API's codes (ISO 3166-1 alpha-3 for countries, its own for "
        "ships and groupings such as NA-SHIP-DP; GET /regions lists them), a comma-separated "
        "list (order, case and duplicates do not matter) or ALL (the whole world, one request "
        "a day). A day's regions go into that day's one file.",
        _DESIGN, default="USA", example="USA,CAN,MEX", check=_iso_code,
    ),
    Variable(
        "BUCKET_NAME", "bucket_name",
        "S3 bucket to write to; empty writes under WAREHOUSE_DIR.",
        _DESIGN, example="my-data-lake", check=_bucket,
    ),
    Variable(
        "PREFIX", "prefix",
        "Folder above the date=YYYY-MM-DD/ partitions; it holds one country set. Default: "
        "covid_daily_reports/<set> (usa, can_mex_usa, all). Outer slashes are stripped; '..', "
        "'.', '//' and date= segments are refused.",
        _DESIGN, example="raw/covid/usa", check=_prefix,
    ),
    Variable(
        "WAREHOUSE_DIR", "warehouse_dir",
        "The local root, used when BUCKET_NAME is empty.",
        _LOCAL, default="warehouse", example="/data/lake",
    ),
    Variable(
        "CATALOG_MODE", "catalog_mode",
        "How covid_catalog_table makes the data queryable: local (DuckDB), glue_partitions "
        "(register date= folders in Glue), glue_projection (Athena's partition projection) or "
        "glue_crawler (run the crawler). auto: local without a bucket; with one, glue_crawler "
        "if GLUE_CRAWLER_NAME is set, else glue_partitions.",
        _CATALOG, default="auto", example="glue_crawler", choices=CATALOG_MODES, auto=True,
    ),
    Variable(
        "CATALOG_PATH", "catalog_path",
        "DuckDB file of the local catalog. Default: <WAREHOUSE_DIR>/catalog.duckdb.",
        _CATALOG,
    ),
    Variable(
        "GLUE_DATABASE", "glue_database",
        "Glue database. Lowercase letters, digits and underscores.",
        _CATALOG, default="covid", check=_glue_name,
    ),
    Variable(
        "GLUE_TABLE", "glue_table",
        "Glue table, and the DuckDB view locally. Default: covid_daily_reports_<set>, as PREFIX.",
        _CATALOG, check=_glue_name,
    ),
    Variable(
        "COUNTRY_DAILY_PREFIX", "country_daily_prefix",
        "Folder above the date= partitions of covid_country_daily, the country-day table. "
        "Default: covid_country_daily/<set>, as PREFIX; never inside PREFIX.",
        _CATALOG, example="reporting/covid/usa", check=_prefix,
    ),
    Variable(
        "COUNTRY_DAILY_TABLE", "country_daily_table",
        "Its Glue table, and its DuckDB view locally. Default: covid_country_daily_<set>.",
        _CATALOG, check=_glue_name,
    ),
    Variable(
        "GLUE_CRAWLER_NAME", "glue_crawler_name",
        "The crawler of glue_crawler mode (infra/template.yaml creates covid-daily-reports).",
        _CATALOG, example="covid-daily-reports", check=_crawler,
    ),
    Variable(
        "CRAWLER_POLL_INTERVAL", "crawler_poll_interval_s",
        "Seconds between get_crawler polls.",
        _CATALOG, default="15", kind=float, low=0, high=600,
    ),
    Variable(
        "CRAWLER_TIMEOUT", "crawler_timeout_s",
        "Seconds a crawl may take before it is stopped.",
        _CATALOG, default="1800", kind=float, low=1, high=86400,
    ),
    Variable(
        "ATHENA_WORKGROUP", "athena_workgroup",
        "Workgroup of `covid-pipeline query --athena` (its results location and scan cutoff "
        "apply).",
        _CATALOG, default="primary",
    ),
    Variable(
        "ATHENA_OUTPUT_LOCATION", "athena_output_location",
        "Where Athena's results go, only if the workgroup sets none.",
        _CATALOG, example="s3://my-data-lake/athena-results/", check=_s3_uri,
    ),
    Variable(
        "LAKE_SENSOR_INTERVAL", "lake_sensor_interval_s",
        "Seconds between the lake sensor's ticks. A tick lists up to 1,000 day files (one S3 "
        "LIST) and reads only those Dagster has not recorded; it never calls the API.",
        _CATALOG, default="60", kind=int, low=5, high=86400,
    ),
    Variable(
        "AUTOMATION_INTERVAL", "automation_interval_s",
        "Seconds between the evaluations of covid_follows_new_days, the sensor that catalogs "
        "new raw days and recomputes the country days they feed.",
        _CATALOG, default="30", kind=int, low=5, high=86400,
    ),
    Variable(
        "FETCH_CONCURRENCY", "fetch_concurrency",
        "Requests in flight at once: the API's budget, shared by every run of a Dagster "
        "deployment (its covid_api pool), and by each Lambda invocation on its own. 8 is "
        "polite to a public API.",
        _THROUGHPUT, default="8", example="16", kind=int, low=1, high=64,
    ),
    Variable(
        "WRITE_CONCURRENCY", "write_concurrency",
        "Days encoded and written at once (an S3 client pools 10 connections).",
        _THROUGHPUT, default="8", kind=int, low=1, high=10,
    ),
    Variable(
        "CPU_WORKERS", "cpu_workers",
        "Processes that decode the days' JSON and encode their files; 0: one thread beside the "
        "fetches. auto: one per CPU (up to 4) for ranges of 120 days or more on more than one "
        "CPU; 0 in AWS Lambda, which cannot run them.",
        _THROUGHPUT, default="auto", example="0", kind=int, low=0, high=16, auto=True,
    ),
    Variable(
        "HTTP_CONNECT_TIMEOUT", "http_connect_timeout_s",
        "Seconds to wait for a connection.",
        _THROUGHPUT, default="5", kind=float, low=0.01, high=300,
    ),
    Variable(
        "HTTP_READ_TIMEOUT", "http_read_timeout_s",
        "Seconds to wait for an answer.",
        _THROUGHPUT, default="30", kind=float, low=0.01, high=600,
    ),
    Variable(
        "HTTP_MAX_RETRIES", "http_max_retries",
        "Retries of a request after a timeout, connection error, 429 or 5xx: the run's only "
        "retry budget (an API that refuses every connection from the start fails after 3 s).",
        _THROUGHPUT, default="5", kind=int, low=0, high=20,
    ),
    Variable(
        "HTTP_BACKOFF", "http_backoff_s",
        "First backoff in seconds; it doubles each retry, with jitter.",
        _THROUGHPUT, default="0.5", kind=float, low=0, high=60,
    ),
    Variable(
        "MAX_DAYS_PER_INVOCATION", "max_days_per_invocation",
        "The Lambda handler refuses longer ranges up front.",
        _LAMBDA, default="1143", example="400", kind=int, low=1, high=1143,
    ),
    Variable(
        "EXECUTION_MODE", "execution_mode",
        "local: the daily asset fetches and writes in Dagster's process. lambda: it fans its "
        "range out to LAMBDA_FUNCTION_NAME (needs BUCKET_NAME).",
        _LAMBDA, default="local", example="lambda", choices=EXECUTION_MODES,
    ),
    Variable(
        "LAMBDA_FUNCTION_NAME", "lambda_function_name",
        "The function of EXECUTION_MODE=lambda.",
        _LAMBDA, example="covid-daily-reports-backfill",
    ),
    Variable(
        "LAMBDA_CHUNK_DAYS", "lambda_chunk_days",
        "Days per invocation (each answer must fit the 4 KB log tail Lambda returns).",
        _LAMBDA, default="31", kind=int, low=1, high=60,
    ),
    Variable(
        "LAMBDA_PARALLELISM", "lambda_parallelism",
        "Invocations at once.",
        _LAMBDA, default="4", kind=int, low=1, high=64,
    ),
    Variable(
        "REQUESTS_CA_BUNDLE", None,
        "Read by requests: the CA bundle (PEM) to verify the API's certificate against, e.g. "
        "behind a TLS-inspecting proxy. Verification is never turned off.",
        _OTHERS, example="/etc/ssl/certs/proxy-ca.pem", commented=True,
    ),
    Variable(
        "AWS_PROFILE", None,
        "Read by boto3: credentials come from its chain (a profile, an IAM role), never from "
        "this project's settings.",
        _OTHERS, commented=True,
    ),
    Variable(
        "AWS_REGION", None, "Read by boto3.", _OTHERS, default="us-east-1",
    ),
    Variable(
        "AWS_ENDPOINT_URL_S3", None,
        "Read by boto3: any S3-compatible server (MinIO, Ceph RGW, moto).",
        _OTHERS, example="http://127.0.0.1:9000", commented=True,
    ),
)  # fmt: skip
_BY_NAME = {variable.name: variable for variable in VARIABLES}


@dataclass(frozen=True)
class Settings:
    """Where to fetch from, which country, where to write and catalog, and how hard to try.

    Empty strings mean "derive the default": the prefix, Glue table and DuckDB path follow the
    country and the warehouse, and the catalog mode follows whether a bucket and a crawler are
    set. `from_environment` maps each field that was read verbatim from the process
    environment to its variable: Dagster resources take those through `dg.EnvVar`.
    """

    # Every value comes from VARIABLES (load_settings parses each default there): no default is
    # written twice. The fields below with a default are those a variable may leave unset:
    # None, or "" for what is derived from the others in __post_init__.
    api_url: str
    iso_code: str
    warehouse_dir: str
    fetch_concurrency: int
    write_concurrency: int
    http_connect_timeout_s: float
    http_read_timeout_s: float
    http_max_retries: int
    http_backoff_s: float
    glue_database: str
    crawler_poll_interval_s: float
    crawler_timeout_s: float
    athena_workgroup: str
    lake_sensor_interval_s: int
    automation_interval_s: int
    max_days_per_invocation: int
    execution_mode: str
    lambda_chunk_days: int
    lambda_parallelism: int
    bucket_name: str | None = None
    prefix: str = ""
    cpu_workers: int | None = None  # decoding processes; None: automatic (core.engine.workers)
    catalog_mode: str = ""
    catalog_path: str = ""
    glue_table: str = ""
    country_daily_prefix: str = ""
    country_daily_table: str = ""
    glue_crawler_name: str | None = None
    athena_output_location: str | None = None
    lambda_function_name: str | None = None
    from_environment: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        slug = self.countries.slug
        derived = {
            # One prefix per country set: a set never overwrites, or mixes with, another's.
            "prefix": f"covid_daily_reports/{slug}",
            "glue_table": f"covid_daily_reports_{slug}",
            "country_daily_prefix": f"covid_country_daily/{slug}",
            "country_daily_table": f"covid_country_daily_{slug}",
            "catalog_path": os.path.join(self.warehouse_dir, "catalog.duckdb"),
            "catalog_mode": (
                "local"
                if not self.bucket_name
                else "glue_crawler"
                if self.glue_crawler_name
                else "glue_partitions"
            ),
        }
        for name, value in derived.items():
            if not getattr(self, name):
                object.__setattr__(self, name, value)

    @property
    def countries(self) -> Countries:
        """The set ISO_CODE names (load_settings has checked it)."""
        return Countries.parse(self.iso_code)

    @property
    def storage_root(self) -> str:
        """Where the files go, for people: s3://bucket/prefix or a local directory."""
        if self.bucket_name:
            return s3_uri(self.bucket_name, self.prefix)
        return os.path.join(self.warehouse_dir, self.prefix)


def load_settings(
    env: Mapping[str, str] | None = None, *, required: tuple[str, ...] = ()
) -> Settings:
    """Read and validate every variable of `VARIABLES` from `env` (default: the environment).

    `required` names variables this entry point cannot do without (the Lambda needs
    BUCKET_NAME); a missing one is reported with every other problem.

    Raises:
        ConfigError: listing every invalid variable with what to do about it.
    """
    process_environment = env is None
    env = os.environ if env is None else env
    problems = [
        f"{name} is required here but not set" for name in required if not env.get(name, "").strip()
    ]
    values: dict[str, Any] = {}
    verbatim: dict[str, str] = {}
    for variable in VARIABLES:
        given = env.get(variable.name, "").strip()
        text = given or variable.default  # the table's default, parsed as a given value is
        if variable.attribute is None or not text:
            continue
        value, found = _parse(variable, text)
        problems += found
        if not found and value is not None:
            values[variable.attribute] = value
            if process_environment and given and str(value) == given:
                verbatim[variable.attribute] = variable.name
    problems += _combination_problems(values)
    if problems:
        raise ConfigError(
            "Invalid settings (fix the environment or .env, see .env.example):\n  - "
            + "\n  - ".join(problems)
        )
    settings = Settings(**values, from_environment=verbatim)
    if _nested(settings.prefix, settings.country_daily_prefix):  # the defaults included
        raise ConfigError(
            f"Invalid settings: COUNTRY_DAILY_PREFIX {settings.country_daily_prefix!r} must be a "
            f"folder of its own, neither PREFIX {settings.prefix!r} nor inside it or around it: "
            "a crawler or a glob of one table would read the other's files"
        )
    return settings


def _parse(variable: Variable, text: str) -> tuple[Any, list[str]]:
    """`text` as the variable's value (None: its default), and what is wrong with it."""
    name = variable.name
    if variable.auto and text.lower() == "auto":
        return None, []
    if variable.choices:
        value = text.lower()
        if value in variable.choices:
            return value, []
        options = ("auto", *variable.choices) if variable.auto else variable.choices
        allowed = " or ".join(options) if len(options) == 2 else f"one of {', '.join(options)}"
        return None, [f"{name} {value!r} must be {allowed}"]
    if variable.kind in (int, float):
        try:
            number = variable.kind(text)
        except ValueError:
            what = "a whole number" if variable.kind is int else "a number"
            return None, [f"{name} {text!r} must be {what}{' or auto' if variable.auto else ''}"]
        assert variable.low is not None and variable.high is not None
        if not variable.low <= number <= variable.high:
            low, high = number_text(variable.low), number_text(variable.high)
            return None, [f"{name} {text} must be between {low} and {high}"]
        return number, []
    if variable.check is not None:
        return variable.check(name, text)
    return text, []


def number_text(bound: float) -> str:
    """A bound as the docs and messages show it: 8, 0.5, 86400."""
    return f"{bound:g}"


def _combination_problems(values: Mapping[str, Any]) -> list[str]:
    """What the values cannot do together (each was fine alone)."""
    bucket = values.get("bucket_name")
    catalog_mode = values.get("catalog_mode") or ""
    execution_mode = values.get("execution_mode", "local")
    rules = [
        (
            catalog_mode.startswith("glue") and not bucket,
            f"CATALOG_MODE {catalog_mode} needs BUCKET_NAME: Glue catalogs S3 data",
        ),
        (
            catalog_mode == "glue_crawler" and not values.get("glue_crawler_name"),
            "CATALOG_MODE glue_crawler needs GLUE_CRAWLER_NAME",
        ),
        (
            execution_mode == "lambda" and not values.get("lambda_function_name"),
            "EXECUTION_MODE lambda needs LAMBDA_FUNCTION_NAME",
        ),
        (
            execution_mode == "lambda" and not bucket,
            "EXECUTION_MODE lambda needs BUCKET_NAME: the function writes to S3",
        ),
    ]
    return [message for broken, message in rules if broken]


def _nested(first: str, second: str) -> bool:
    return first == second or first.startswith(second + "/") or second.startswith(first + "/")


def storage_problems(bucket_name: str | None, prefix: str) -> list[str]:
    """Why a bucket and prefix cannot be written to as given.

    For values set outside load_settings, such as Dagster run config; the prefix must
    already be normalised.
    """
    problems = _bucket_name_problems(bucket_name) if bucket_name else []
    normalised, problem = normalise_prefix(prefix)
    if problem:
        problems.append(problem)
    elif normalised != prefix:
        problems.append(f"PREFIX {prefix!r} must not start or end with '/' (use {normalised!r})")
    return problems


def normalise_prefix(prefix: str) -> tuple[str, str | None]:
    """Strip leading and trailing slashes; refuse anything that could escape or blur the layout.

    Returns:
        The normalised prefix and a problem description (None when it is fine).
    """
    stripped = prefix.strip("/")
    segments = stripped.split("/")
    if not stripped:
        return stripped, f"PREFIX {prefix!r} is empty once its slashes are stripped"
    if any(segment in ("", ".", "..") for segment in segments):  # no escape, no blur
        return stripped, f"PREFIX {prefix!r} must not contain '..', '.' or empty segments ('//')"
    if not all(_PREFIX_SEGMENT.match(segment) for segment in segments):
        return stripped, (
            f"PREFIX {prefix!r} may only use letters, digits and _ = . - between slashes"
        )
    if any(segment.startswith(DAY_FOLDERS) for segment in segments):
        return stripped, f"PREFIX {prefix!r} must not contain a date= folder: the pipeline adds it"
    return stripped, None


def _bucket_name_problems(name: str) -> list[str]:
    # The S3 naming rules that a typo is likely to break; S3 itself enforces the rest.
    if not _BUCKET_NAME.match(name) or ".." in name:
        return [
            f"BUCKET_NAME {name!r} is not a valid S3 bucket name (3-63 characters: "
            "lowercase letters, digits, dots and hyphens, starting and ending with a letter or "
            "digit; give the name only, without s3://)"
        ]
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return []
    return [f"BUCKET_NAME {name!r} must not look like an IP address"]


def settings_with(values: Mapping[str, Any]) -> Settings:
    """The table's settings with `values` (by attribute) in place, checked as load_settings checks.

    For values set outside the environment, such as a Dagster resource's fields after run
    config: they go through the same table, so a value means the same thing there.

    Raises:
        ConfigError: listing every invalid value.
    """
    env = {}
    for variable in VARIABLES:
        if variable.attribute is not None and variable.attribute in values:
            value = values[variable.attribute]
            env[variable.name] = "auto" if value is None and variable.auto else _text(value)
    return load_settings(env)


def _text(value: Any) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


# From settings to the things they configure: the one way, for Dagster and the Lambda alike.


def api_client(settings: Settings) -> CovidApiClient:
    """The API client: one pooled session, sized for FETCH_CONCURRENCY threads."""
    return CovidApiClient(
        settings.api_url,
        settings.iso_code,
        connect_timeout_s=settings.http_connect_timeout_s,
        read_timeout_s=settings.http_read_timeout_s,
        retry=RetryPolicy(max_retries=settings.http_max_retries, backoff_s=settings.http_backoff_s),
        pool_size=settings.fetch_concurrency,
    )


def store(settings: Settings, s3_client: Callable[[], Any], prefix: str) -> Store:
    """Where the files go: the bucket (`s3_client` makes its client) or the local warehouse.

    `prefix` is the table's folder in it, which an S3 store names in its errors.
    """
    if settings.bucket_name:
        return S3Store(settings.bucket_name, s3_client(), prefix)
    return LocalStore(settings.warehouse_dir)


def range_options(settings: Settings) -> RangeOptions:
    """How hard a range pushes: requests in flight, days written at once, decoding processes."""
    return RangeOptions(
        fetch_concurrency=settings.fetch_concurrency,
        write_concurrency=settings.write_concurrency,
        cpu_workers=settings.cpu_workers,
    )


def catalog_target(settings: Settings) -> CatalogTarget:
    """Which catalog CATALOG_MODE names for the raw table, with the names it needs."""
    return CatalogTarget(
        mode=settings.catalog_mode,
        database=settings.glue_database,
        table=settings.glue_table,
        schema=transform.SCHEMA,
        description=transform.DESCRIPTION,
        catalog_path=settings.catalog_path,
        crawler_name=settings.glue_crawler_name,
        crawler_poll_interval_s=settings.crawler_poll_interval_s,
        crawler_timeout_s=settings.crawler_timeout_s,
    )


def country_daily_catalog_target(settings: Settings) -> CatalogTarget:
    """The country-day table's catalog: CATALOG_MODE's, in the same database and DuckDB file.

    The crawler of glue_crawler mode crawls the raw prefix only; the country-day table's schema
    is ours, so in that mode it is declared and its days registered directly.
    """
    mode = "glue_partitions" if settings.catalog_mode == "glue_crawler" else settings.catalog_mode
    return CatalogTarget(
        mode=mode,
        database=settings.glue_database,
        table=settings.country_daily_table,
        schema=country_daily.SCHEMA,
        description=country_daily.DESCRIPTION,
        catalog_path=settings.catalog_path,
    )
