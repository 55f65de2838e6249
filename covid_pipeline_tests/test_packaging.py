"""The product's wheel holds the product: no replay API, no test data, no tests.

Its one data file is the population table the country-day rates need (a few KB).
"""

import subprocess
import sys
import zipfile
from pathlib import Path

from covid_pipeline_tests.support.project import PROJECT_ROOT

MAX_WHEEL_BYTES = 2_000_000


def test_wheel_ships_only_covid_pipeline_and_no_data(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), "."],
        cwd=PROJECT_ROOT,
        check=True,
    )
    [wheel] = tmp_path.glob("covid_pipeline-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert wheel.stat().st_size < MAX_WHEEL_BYTES, wheel.stat().st_size
    csv = [name for name in names if name.endswith(".csv")]
    assert csv == ["covid_pipeline/core/reporting/population.csv"]
    assert zipfile.ZipFile(wheel).getinfo(csv[0]).file_size < 10_000
    packages = {
        name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")
    }
    assert packages == {"covid_pipeline"}
    assert (
        "covid_pipeline/core/engine/run.py" in names and "covid_pipeline/lambda_handler.py" in names
    )
