"""Definitions load offline for each storage mode; the core stays free of Dagster."""

import subprocess
import sys

import dagster as dg
import pytest

from covid_pipeline.core.config import load_settings
from covid_pipeline.core.transform import SCHEMA
from covid_pipeline.definitions import build_definitions


@pytest.mark.parametrize("env", [{}, {"BUCKET_NAME": "my-lake", "PREFIX": "raw/covid"}])
def test_definitions_resolve_the_asset_and_its_partitions(env: dict[str, str]) -> None:
    defs = build_definitions(load_settings(env))
    job = defs.resolve_implicit_global_asset_job_def()
    partitions = job.partitions_def
    keys = partitions.get_partition_keys()
    assert (len(keys), keys[0], keys[-1]) == (1143, "2020-01-22", "2023-03-09")
    spec = defs.resolve_assets_def("covid_daily_reports")
    assert spec.backfill_policy == dg.BackfillPolicy.single_run()
    schema = spec.specs_by_key[dg.AssetKey("covid_daily_reports")].metadata["dagster/column_schema"]
    assert [c.name for c in schema.columns] == SCHEMA.names


def test_definitions_module_exposes_defs() -> None:
    from covid_pipeline import definitions

    assert isinstance(definitions.defs, dg.Definitions)


def test_definitions_refuse_bad_settings_loudly() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import covid_pipeline.definitions"],
        env={"ISO_CODE": "U$A", "PATH": ""},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "ISO_CODE 'U$A' must be ALL, or the API's region codes" in result.stderr


def test_core_imports_without_dagster() -> None:
    code = (
        "import importlib, pkgutil, sys, covid_pipeline.core as core;"
        "names = pkgutil.iter_modules(core.__path__, 'covid_pipeline.core.');"
        "[importlib.import_module(m.name) for m in names];"
        "assert 'dagster' not in sys.modules, 'the core imported dagster'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_definitions_pass_variables_read_verbatim_as_env_vars(
    bare_environment: pytest.MonkeyPatch,
) -> None:
    """The UI shows the variable a value came from, and a launch reads its value then."""
    monkeypatch = bare_environment
    monkeypatch.setenv("API_URL", "http://127.0.0.1:8000/api")
    monkeypatch.setenv("FETCH_CONCURRENCY", "4")
    monkeypatch.setenv("ISO_CODE", "usa")  # normalised to USA: passed as the value
    resources = build_definitions(load_settings()).resources
    api = resources["covid_api"]
    assert isinstance(api.api_url, dg.EnvVar) and api.api_url.env_var_name == "API_URL"
    # dg.EnvVar.int's value: an int that names its variable (Dagster resolves it at launch).
    assert api.fetch_concurrency.env_var_name == "FETCH_CONCURRENCY"
    assert api.iso_code == "USA" and not isinstance(api.iso_code, dg.EnvVar)
    assert not isinstance(resources["hive_parquet_io_manager"].prefix, dg.EnvVar)  # derived
