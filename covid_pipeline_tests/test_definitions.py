"""Definitions load offline for each storage mode; the core stays free of Dagster."""

import ast
import subprocess
import sys

import dagster as dg
import pyarrow as pa
import pytest
import tomllib
import yaml

from covid_pipeline.core.config import load_settings
from covid_pipeline.core.lake import parquet
from covid_pipeline.core.schema.transform import SCHEMA
from covid_pipeline.definitions import build_definitions
from covid_pipeline_tests.support.deployment import LOCATION
from covid_pipeline_tests.support.project import PROJECT_ROOT


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
        "names = [m.name for m in pkgutil.walk_packages(core.__path__, 'covid_pipeline.core.')];"
        "[importlib.import_module(name) for name in names];"
        "assert len(names) >= 25, names;"
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


@pytest.mark.parametrize(("bucket", "storage"), [("", "local"), ("my-lake", "s3")])
def test_definitions_carry_owners_tags_kinds_and_a_code_version(bucket: str, storage: str) -> None:
    defs = build_definitions(load_settings({"BUCKET_NAME": bucket}))
    [daily] = defs.resolve_assets_def("covid_daily_reports").specs
    [catalog] = defs.resolve_assets_def("covid_catalog_table").specs
    assert daily.kinds == {"parquet", "python", storage}  # the storage actually configured
    assert catalog.kinds == {"duckdb" if not bucket else "glue"}
    for spec in (daily, catalog):
        assert spec.owners == ["team:data-engineering"]
        assert spec.tags["domain"] == "public-health" and spec.tags["source"] == "covid-api"
    assert (daily.tags["layer"], catalog.tags["layer"]) == ("raw", "catalog")
    assert daily.code_version == parquet.format_version()


def test_definitions_code_version_follows_the_file_format(monkeypatch: pytest.MonkeyPatch) -> None:
    """A schema change changes it by itself; FORMAT_VERSION is bumped for decoding changes."""
    version, digest = parquet.format_version().split(".")
    assert version == str(parquet.FORMAT_VERSION) and len(digest) == 8
    monkeypatch.setattr(parquet, "FORMAT_VERSION", parquet.FORMAT_VERSION + 1)
    assert parquet.format_version() == f"{int(version) + 1}.{digest}"
    monkeypatch.setattr(parquet, "SCHEMA", SCHEMA.append(pa.field("vaccinated", pa.int64())))
    assert parquet.format_version().split(".")[1] != digest


def test_definitions_one_location_name_for_every_entry_point() -> None:
    """dg, `dagster dev` and `-w workspace.yaml` name the code location alike.

    Sensor state (the lake sensor's cursor, a sensor turned off) is kept per location name. The
    names as the running servers report them are checked in test_dg.py and test_security.py.
    """
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]
    workspace = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())
    [entry] = workspace["load_from"]
    assert pyproject["dg"]["directory_type"] == "project"
    assert {
        pyproject["dg"]["project"]["code_location_name"],
        pyproject["dagster"]["code_location_name"],
        entry["python_module"]["location_name"],
    } == {LOCATION}
    targets = {
        pyproject["dg"]["project"]["code_location_target_module"],
        pyproject["dagster"]["module_name"],
        entry["python_module"]["module_name"],
    }
    assert targets == {"covid_pipeline.definitions"}


def test_readme_fits_in_250_lines() -> None:
    """The README is the map; the detail lives in docs/."""
    assert len((PROJECT_ROOT / "README.md").read_text().splitlines()) <= 250


# The core's rooms, and the rooms each may import from: settings (config) above them all, the
# engine and the catalog side by side over the lake, the schema and the source, with the
# reporting roll-up (pure tables in, tables out) beside the lake; nothing upward.
_BELOW = {
    "errors": set(),
    "dates": set(),
    "source": {"errors", "dates"},
    "schema": {"source", "errors", "dates"},
    "reporting": {"schema", "source", "errors", "dates"},
    "lake": {"schema", "source", "errors", "dates"},
    "engine": {"lake", "schema", "source", "errors", "dates"},
    "catalog": {"reporting", "lake", "schema", "source", "errors", "dates"},
    "config": {"engine", "catalog", "reporting", "lake", "schema", "source", "errors", "dates"},
}


def test_core_rooms_import_only_downward() -> None:
    """No cycle, no upward import: each room of core/ imports only the rooms below it."""
    core = PROJECT_ROOT / "covid_pipeline" / "core"
    rooms = {path.stem if path.parent == core else path.parent.name for path in core.rglob("*.py")}
    assert rooms - {"__init__"} == set(_BELOW)
    for path in core.rglob("*.py"):
        room = path.stem if path.parent == core else path.parent.name
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "covid_pipeline.core"
            ):
                parts = (node.module or "").split(".")
                targets = [parts[2]] if len(parts) > 2 else [alias.name for alias in node.names]
                for target in targets:
                    assert target == room or target in _BELOW[room], f"{path}: {node.module}"
