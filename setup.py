"""Packaging: the one place dependencies are declared (pinned; constraints.txt pins the rest)."""

from setuptools import find_packages, setup

# The Dagster set must match: dagster 1.X.Y pairs with libraries 0.(X+16).Y.
DAGSTER = ["dagster==1.13.27", "dagster-aws==0.29.27", "dagster-webserver==1.13.27"]
# What the Lambda handler needs: the `lambda` extra, which `make lambda-package` ships.
# dagster-pipes (no dependencies) reports to Dagster when the fan-out mode invokes the function.
LAMBDA = [
    "pyarrow==26.0.1",
    "requests==2.34.2",
    "boto3==1.44.8",
    "dagster-pipes==1.13.27",
    # Decodes the API's JSON into typed records in one validating pass, faster than json.loads
    # plus coercion (docs/performance.md). No dependencies.
    "msgspec==0.23.0",
]

# The summary asset's chart of the epidemic's curve, drawn in the Dagster layer only (the Lambda
# zip leaves it out): a PNG in markdown metadata, as Dagster's own tutorial draws one.
REPORTING = ["matplotlib==3.11.2"]

# The production instance (dagster-instance.postgres.yaml): runs and events in PostgreSQL.
# It brings psycopg2-binary, the driver the instance file names (constraints.txt pins it).
POSTGRES = ["dagster-postgres==0.29.27"]

setup(
    name="covid_pipeline",
    version="0.1.0",
    description="Backfill covid-api.com daily reports into a Hive-partitioned Parquet data lake",
    # The product only: the tests, and the replay API with its data (replay/, a package of its
    # own that `make install` adds), stay out of the wheel.
    packages=find_packages(include=["covid_pipeline", "covid_pipeline.*"]),
    python_requires=">=3.10",
    # DuckDB is the embedded local catalog and query engine (no server, reads Parquet directly).
    install_requires=[*DAGSTER, *LAMBDA, "pandas==3.1.1", "duckdb==2.0.1", *REPORTING],
    # The population of each country (JHU CSSE's lookup table): the country-day table's rates.
    package_data={"covid_pipeline.core.reporting": ["population.csv"]},
    entry_points={"console_scripts": ["covid-pipeline=covid_pipeline.cli:main"]},
    extras_require={
        "dev": [
            "dagster-dg-cli==1.13.27",  # `dg`: dg dev, dg launch, dg check defs (the Dagster set)
            "pytest==9.2.0",
            "pytest-timeout==2.4.0",
            "pytest-xdist==3.8.0",  # `make test`: two workers; the suite mostly waits
            "playwright==1.65.2",  # drives Debian's Chromium in the UI test; downloads nothing
            "moto[server]==5.2.5",
            "pyparsing==3.3.3",  # moto's Glue needs it
            "cryptography==50.0.2",  # a self-signed certificate for the TLS tests
            "ruff==0.17.6",
            "mypy==2.4.1",  # `make lint` type-checks (strict on core/)
            "types-requests==2.33.0.20261030",
            *POSTGRES,  # the tests run the production instance against a real server
        ],
        "lambda": LAMBDA,
        "postgres": POSTGRES,
    },
)
