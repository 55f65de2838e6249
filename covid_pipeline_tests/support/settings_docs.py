"""`.env.example` and the README's table of settings, written from core.config's one table.

Tooling, not product: it ships in no wheel and no Lambda zip. `make env-example` runs it, and
test_config.py fails when the files and the table disagree.
"""

import sys
import textwrap
from pathlib import Path

from covid_pipeline.core import config


def env_example() -> str:
    """`.env.example`, written from config.VARIABLES."""
    lines = [
        "# Written from covid_pipeline/core/config.py (`make env-example`); do not edit by hand.",
        "# Copy to .env (git ignores it): `dg dev` and `dg launch` (and the dagster CLI) read it",
        "# from the working directory. Every variable is optional: the defaults fetch the real",
        "# API into ./warehouse.",
    ]
    group = None
    for variable in config.VARIABLES:
        if variable.group != group:
            group = variable.group
            lines += ["", f"# --- {group} " + "-" * (93 - len(group))]
        lines += textwrap.wrap(_help(variable), 98, initial_indent="# ", subsequent_indent="# ")
        value = variable.default or ("" if not variable.commented else variable.example)
        lines.append(f"{'# ' if variable.commented else ''}{variable.name}={value}")
    return "\n".join(lines) + "\n"


def readme_table() -> str:
    """The README's table of variables, written from config.VARIABLES."""
    rows = ["| variable | meaning | default | example |", "| --- | --- | --- | --- |"]
    for variable in config.VARIABLES:
        default = f"`{variable.default}`" if variable.default else "(unset)"
        example = f"`{variable.example}`" if variable.example else ""
        rows.append(f"| `{variable.name}` | {_help(variable)} | {default} | {example} |")
    return "\n".join(rows) + "\n"


def _help(variable: config.Variable) -> str:
    bounds = ""
    if variable.kind in (int, float) and variable.low is not None and variable.high is not None:
        bounds = f" ({config.number_text(variable.low)}-{config.number_text(variable.high)})"
    return variable.help.rstrip(".") + bounds + "."


README_TABLE_START, README_TABLE_END = "<!-- settings:start -->\n", "<!-- settings:end -->"


def write_docs(root: Path) -> None:
    """Rewrite `.env.example`, and the README's table between its markers, from config.VARIABLES."""
    (root / ".env.example").write_text(env_example())
    readme = root / "README.md"
    text = readme.read_text()
    start = text.index(README_TABLE_START) + len(README_TABLE_START)
    readme.write_text(text[:start] + readme_table() + text[text.index(README_TABLE_END) :])


if __name__ == "__main__":
    # `python -m covid_pipeline_tests.support.settings_docs [DIR]` (`make env-example`).
    write_docs(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
