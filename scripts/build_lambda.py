"""Build dist/lambda.zip: the handler and what it imports, for python3.12 on x86_64.

Dependencies come from PyPI as manylinux wheels of the pinned versions (the `lambda` extra of
setup.py, constrained by constraints.txt); the project's own modules are exactly those that
importing the handler loads, so nothing Dagster, pandas or DuckDB ships. The tree is trimmed
of what never runs (tests, headers, Cython sources, Arrow Flight, duplicate shared-library
copies), and the build fails if it exceeds Lambda's 250 MB unzipped limit.

    python scripts/build_lambda.py [--out dist/lambda.zip]
"""

import argparse
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNZIPPED_LIMIT = 262_144_000  # Lambda: 250 MB for the function and its layers, unzipped
# Both tags: with manylinux2014 alone pip silently picks older pandas/pyarrow/numpy builds.
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
_TRIM_DIRS = {"tests", "test", "__pycache__", "include"}
_TRIM_SUFFIXES = (".pyi", ".pxd", ".pyx", ".pxi", ".h", ".hpp", ".cc", ".cpp")
_TRIM_PATTERNS = (re.compile(r"^_?flight|libarrow_flight"),)  # Arrow Flight: RPC, unused here
_VERSIONED_LIB = re.compile(r"^(lib.+\.so)(\.\d+)(\.\d+)*$")


def main(argv: list[str] | None = None) -> int:
    """Build the zip; print its sizes; exit 1 if it is over the limit."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "lambda.zip")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as build:
        tree = Path(build)
        install_dependencies(tree)
        for module in handler_modules():
            target = tree / module.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(module, target)
        removed = trim(tree)
        size = sum(f.stat().st_size for f in tree.rglob("*") if f.is_file())
        say(f"trimmed {removed / 1e6:.1f} MB; unzipped size {size / 1e6:.1f} MB "
            f"(limit {UNZIPPED_LIMIT / 1e6:.1f} MB)")  # fmt: skip
        if size > UNZIPPED_LIMIT:
            say("over Lambda's unzipped limit: trim more, or move dependencies to a layer")
            return 1
        write_zip(tree, args.out)
    say(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB zipped)")
    return 0


def lambda_requirements() -> list[str]:
    """The `lambda` extra of the installed covid_pipeline, as pinned in setup.py."""
    requirements = importlib.metadata.requires("covid_pipeline") or []
    return [r.split(";")[0].strip() for r in requirements if 'extra == "lambda"' in r]


def install_dependencies(tree: Path) -> None:
    """Pip-install the pinned manylinux wheels for CPython 3.12 into `tree`."""
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-compile",
        "--target", str(tree), "--implementation", "cp", "--python-version", "3.12",
        "--only-binary=:all:", *platforms,
        "-c", str(ROOT / "constraints.txt"), *lambda_requirements(),
    ]  # fmt: skip
    say(f"installing {' '.join(lambda_requirements())} for python3.12 x86_64")
    subprocess.run(command, check=True)


def handler_modules() -> list[Path]:
    """The project's source files that importing the handler loads (in a fresh interpreter)."""
    code = (
        "import sys, covid_pipeline.lambda_handler;"
        "print('\\n'.join(m.__file__ for n, m in sys.modules.items()"
        " if n.split('.')[0] == 'covid_pipeline'))"
    )
    env = {**os.environ, "BUCKET_NAME": "build-probe"}  # a cold start needs a valid config
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
    ).stdout
    return sorted(Path(line) for line in output.split())


def trim(tree: Path) -> int:
    """Delete what the handler never loads; return the bytes removed."""
    removed = 0
    for path in sorted(tree.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if not path.exists() or path.is_symlink():
            continue
        name = path.name
        drop = (
            (path.is_dir() and name in _TRIM_DIRS and "dist-info" not in str(path.parent))
            or (path.is_file() and name.endswith(_TRIM_SUFFIXES))
            or any(p.search(name) for p in _TRIM_PATTERNS)
            or (path.is_file() and _is_duplicate_library(path))
        )
        if drop:
            removed += _size(path)
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return removed


def _is_duplicate_library(path: Path) -> bool:
    """libX.so and libX.so.N.M.P are copies of libX.so.N (wheels cannot hold symlinks).

    The loader asks for the SONAME, libX.so.N, so only that copy has to stay.
    """
    match = _VERSIONED_LIB.match(path.name)
    if path.name.endswith(".so") and list(path.parent.glob(f"{path.name}.*")):
        return any(_VERSIONED_LIB.match(p.name) for p in path.parent.glob(f"{path.name}.*"))
    if match and match.group(3):  # libX.so.N.M(.P): keep only if libX.so.N is missing
        return (path.parent / f"{match.group(1)}{match.group(2)}").exists()
    return False


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def write_zip(tree: Path, out: Path) -> None:
    """A reproducible zip: sorted entries, fixed timestamps, readable permissions."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(p for p in tree.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(
                path.relative_to(tree).as_posix(), date_time=(1980, 1, 1, 0, 0, 0)
            )
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())


def say(text: str) -> None:
    """Print a line at once (the build's progress)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
