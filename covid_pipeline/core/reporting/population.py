"""Population by region code: the country rows of JHU CSSE's UID lookup table, shipped with us.

`population.csv` beside this module holds, for each country row of
`UID_ISO_FIPS_LookUp_Table.csv` (no province, no county, an iso3 code and a population), the
code, JHU's name and the population: 186 countries. Source: the COVID-19 Data Repository by
the Center for Systems Science and Engineering (CSSE) at Johns Hopkins University,
https://github.com/CSSEGISandData/COVID-19, commit 3d40a38229d1df292af65ad45949bfb69ae09a22,
`csse_covid_19_data/UID_ISO_FIPS_LookUp_Table.csv`, CC BY 4.0 (docs/data.md).

A code the table lacks (ships such as NA-SHIP-DP, groupings, countries that joined the data
after the table was cut, such as KIR) has no population: its per-capita figures stay null
rather than be guessed.
"""

import csv
import functools
from pathlib import Path

POPULATION_FILE = Path(__file__).with_name("population.csv")


@functools.cache
def populations() -> dict[str, int]:
    """Region code -> population, for the codes the lookup table has."""
    with POPULATION_FILE.open(encoding="utf-8", newline="") as handle:
        return {row["iso"]: int(row["population"]) for row in csv.DictReader(handle)}
