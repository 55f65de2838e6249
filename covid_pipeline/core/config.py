"""Settings: read from the environment once, validated together, frozen.

Every entry point (Dagster definitions, the demo, later the Lambda handler) calls
`load_settings()`, so a variable means the same thing everywhere and one bad value is
reported together with every other bad value, before anything is fetched or written.
AWS credentials, region and endpoint are not settings: boto3 reads them itself
(AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3, an IAM role).
"""

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from covid_pipeline.core.countries import Countries

DEFAULT_API_URL = "https://covid-api.com/api"
DEFAULT_ISO_CODE = "USA"
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9_=.-]+$")
_GLUE_NAME = re.compile(r"^[a-z0-9_]{1,255}$")
_CRAWLER_NAME = re.compile(r"^[A-Za-z0-9_. -]{1,255}$")


class ConfigError(ValueError):
    """One or more settings are invalid; the message lists every problem."""


CATALOG_MODES = ("local", "glue_partitions", "glue_projection", "glue_crawler")


@dataclass(frozen=True)
class Settings:
    """Where to fetch from, which country, where to write and catalog, and how hard to try.

    Empty strings mean "derive the default": the prefix, Glue table and DuckDB path follow the
    country and the warehouse, and the catalog mode follows whether a bucket and a crawler are set.
    """

    api_url: str = DEFAULT_API_URL
    iso_code: str = DEFAULT_ISO_CODE
    bucket_name: str | None = None
    prefix: str = ""
    warehouse_dir: str = "warehouse"
    fetch_concurrency: int = 8
    write_concurrency: int = 8
    cpu_workers: int | None = None  # processes that decode days; None: automatic (core.workers)
    http_connect_timeout_s: float = 5.0
    http_read_timeout_s: float = 30.0
    http_max_retries: int = 5
    http_backoff_s: float = 0.5
    catalog_mode: str = ""
    catalog_path: str = ""
    glue_database: str = "covid"
    glue_table: str = ""
    glue_crawler_name: str | None = None
    crawler_poll_interval_s: float = 15.0
    crawler_timeout_s: float = 1800.0
    athena_workgroup: str = "primary"
    athena_output_location: str | None = None
    max_days_per_invocation: int = 1143  # the Lambda refuses larger ranges up front
    execution_mode: str = "local"  # or "lambda": the daily asset fans out to Lambda
    lambda_function_name: str | None = None
    lambda_chunk_days: int = 31
    lambda_parallelism: int = 4

    def __post_init__(self) -> None:
        slug = self.countries.slug
        derived = {
            # One prefix per country set: a set never overwrites, or mixes with, another's.
            "prefix": f"covid_daily_reports/{slug}",
            "glue_table": f"covid_daily_reports_{slug}",
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
            return f"s3://{self.bucket_name}/{self.prefix}"
        return os.path.join(self.warehouse_dir, self.prefix)


def load_settings(
    env: Mapping[str, str] | None = None, *, required: tuple[str, ...] = ()
) -> Settings:
    """Read and validate every setting from `env` (default: the process environment).

    `required` names variables this entry point cannot do without (the Lambda needs
    BUCKET_NAME); a missing one is reported with every other problem.

    Raises:
        ConfigError: listing every invalid variable with what to do about it.
    """
    env = os.environ if env is None else env
    problems: list[str] = []

    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    problems += [f"{name} is required here but not set" for name in required if not get(name)]

    api_url = (get("API_URL") or DEFAULT_API_URL).rstrip("/")
    problems += api_url_problems(api_url)

    iso_code = get("ISO_CODE") or DEFAULT_ISO_CODE
    try:
        iso_code = Countries.parse(iso_code).label  # canonical: upper case, sorted, unique
    except ValueError as error:
        problems.append(str(error))

    bucket_name = get("BUCKET_NAME")
    if bucket_name is not None:
        problems.extend(_bucket_name_problems(bucket_name))

    prefix = get("PREFIX")
    if prefix is not None:
        prefix, problem = normalise_prefix(prefix)
        problems.extend([problem] if problem else [])

    catalog_mode = (get("CATALOG_MODE") or "").lower()
    if catalog_mode not in ("", "auto", *CATALOG_MODES):
        problems.append(
            f"CATALOG_MODE {catalog_mode!r} must be one of auto, {', '.join(CATALOG_MODES)}"
        )
    catalog_mode = "" if catalog_mode == "auto" else catalog_mode
    if catalog_mode.startswith("glue") and not bucket_name:
        problems.append(f"CATALOG_MODE {catalog_mode} needs BUCKET_NAME: Glue catalogs S3 data")
    crawler = get("GLUE_CRAWLER_NAME")
    if catalog_mode == "glue_crawler" and not crawler:
        problems.append("CATALOG_MODE glue_crawler needs GLUE_CRAWLER_NAME")
    if crawler is not None and not _CRAWLER_NAME.match(crawler):
        problems.append(f"GLUE_CRAWLER_NAME {crawler!r} is not a valid crawler name")
    for name in ("GLUE_DATABASE", "GLUE_TABLE"):
        value = get(name)
        if value is not None and not _GLUE_NAME.match(value):
            problems.append(
                f"{name} {value!r} must be lowercase letters, digits and underscores "
                "(names Athena can query without quoting)"
            )
    execution_mode = (get("EXECUTION_MODE") or "local").lower()
    if execution_mode not in ("local", "lambda"):
        problems.append(f"EXECUTION_MODE {execution_mode!r} must be local or lambda")
    function_name = get("LAMBDA_FUNCTION_NAME")
    if execution_mode == "lambda" and not function_name:
        problems.append("EXECUTION_MODE lambda needs LAMBDA_FUNCTION_NAME")
    if execution_mode == "lambda" and not bucket_name:
        problems.append("EXECUTION_MODE lambda needs BUCKET_NAME: the function writes to S3")
    output = get("ATHENA_OUTPUT_LOCATION")
    if output is not None and not output.startswith("s3://"):
        problems.append(f"ATHENA_OUTPUT_LOCATION {output!r} must be an s3:// URI")

    numbers = {
        "FETCH_CONCURRENCY": (int, 1, 64, "fetch_concurrency"),
        "CPU_WORKERS": (int, 0, 16, "cpu_workers"),
        # The IO manager's S3 client (dagster-aws S3Resource) pools 10 connections.
        "WRITE_CONCURRENCY": (int, 1, 10, "write_concurrency"),
        "HTTP_CONNECT_TIMEOUT": (float, 0.01, 300, "http_connect_timeout_s"),
        "HTTP_READ_TIMEOUT": (float, 0.01, 600, "http_read_timeout_s"),
        "HTTP_MAX_RETRIES": (int, 0, 20, "http_max_retries"),
        "HTTP_BACKOFF": (float, 0, 60, "http_backoff_s"),
        "CRAWLER_POLL_INTERVAL": (float, 0, 600, "crawler_poll_interval_s"),
        "CRAWLER_TIMEOUT": (float, 1, 86400, "crawler_timeout_s"),
        "MAX_DAYS_PER_INVOCATION": (int, 1, 1143, "max_days_per_invocation"),
        # Each chunk's report must fit the 4 KB log tail Lambda returns: about 60 days at most.
        "LAMBDA_CHUNK_DAYS": (int, 1, 60, "lambda_chunk_days"),
        "LAMBDA_PARALLELISM": (int, 1, 64, "lambda_parallelism"),
    }
    parsed: dict[str, float] = {}
    for name, (kind, low, high, attribute) in numbers.items():
        text = get(name)
        if text is None or (name == "CPU_WORKERS" and text.lower() == "auto"):
            continue
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            also = " or auto" if name == "CPU_WORKERS" else ""
            problems.append(f"{name} {text!r} must be {what}{also}")
            continue
        if not low <= value <= high:
            problems.append(f"{name} {text} must be between {low} and {high}")
            continue
        parsed[attribute] = value

    if problems:
        raise ConfigError(
            "Invalid settings (fix the environment or .env, see .env.example):\n  - "
            + "\n  - ".join(problems)
        )
    return Settings(
        api_url=api_url,
        iso_code=iso_code,
        bucket_name=bucket_name,
        prefix=prefix or "",
        warehouse_dir=get("WAREHOUSE_DIR") or "warehouse",
        catalog_mode=catalog_mode,
        catalog_path=get("CATALOG_PATH") or "",
        glue_database=get("GLUE_DATABASE") or "covid",
        glue_table=get("GLUE_TABLE") or "",
        glue_crawler_name=crawler,
        athena_workgroup=get("ATHENA_WORKGROUP") or "primary",
        athena_output_location=output,
        execution_mode=execution_mode,
        lambda_function_name=function_name,
        **parsed,  # type: ignore[arg-type]
    )


def api_url_problems(url: str) -> list[str]:
    """Why `url` cannot be the API's base URL: only http(s) with a host, nothing to hide."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [f"API_URL {url!r} must be an http:// or https:// URL"]
    if parts.username or parts.password:
        return ["API_URL must not carry a user or password (it would show in logs and the UI)"]
    if parts.query or parts.fragment:
        return [f"API_URL {url!r} must be a base URL, without ?query or #fragment"]
    return []


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
    if any(segment.startswith("date=") for segment in segments):
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
