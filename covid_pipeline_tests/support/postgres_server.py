"""A throwaway PostgreSQL server on 127.0.0.1, from Debian's `postgresql` package.

For the tests of the production instance (dagster-instance.postgres.yaml) and for
`make dev-postgres`. initdb refuses to run as root, so as root the server runs as the
`postgres` user the package creates, in a folder that user owns; otherwise as the caller.

    python -m covid_pipeline_tests.support.postgres_server --dir .postgres --port 5433 --db dagster
    python -m covid_pipeline_tests.support.postgres_server --dir .postgres --stop
"""

import argparse
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

USER = "postgres"  # the database superuser; trust authentication on 127.0.0.1 only
# What the production instance's processes run with, beside the DAGSTER_PG_* variables: two
# settings Dagster reads from the environment only (README, Running in production). The tests
# and the benchmark use this; the Makefile's dev-postgres spells the same two out.
PRODUCTION_ENV = {
    "DAGSTER_EVENT_BATCH_SIZE": "100",
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
}


def bin_dir() -> Path | None:
    """Where Debian's package keeps initdb and pg_ctl (the newest version), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    """One cluster in `root` (created when missing), serving on 127.0.0.1:`port`."""

    def __init__(self, root: Path | None, port: int) -> None:
        binaries = bin_dir()
        if binaries is None:
            raise RuntimeError(
                "PostgreSQL is not installed: run scripts/install_postgres.sh (apt-get install "
                "postgresql)"
            )
        self.bin = binaries
        self.root = root or Path(tempfile.mkdtemp(prefix="covid-postgres-"))
        self.port = port
        self.data = self.root / "data"

    def start(self) -> "PostgresServer":
        """Create the cluster if needed, start it, return once it accepts connections."""
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # initdb refuses root: the folder is the postgres user's
            shutil.chown(self.root, USER, USER)
        if not (self.data / "PG_VERSION").exists():
            self._as_owner(
                [str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust"]
            )
        self._as_owner(
            [
                str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                "-o", f"-p {self.port} -k {self.root} -h 127.0.0.1", "-w", "start",
            ]
        )  # fmt: skip
        return self

    def create_database(self, name: str) -> None:
        """A new, empty database (a test's own, so tests never see each other's runs)."""
        self._as_owner(
            [str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name]
        )

    def environment(self, database: str) -> dict[str, str]:
        """The DAGSTER_PG_* variables of dagster-instance.postgres.yaml for `database`."""
        return {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": USER,
            "DAGSTER_PG_PASSWORD": "",  # trust authentication: the password is never checked
            "DAGSTER_PG_DB": database,
        }

    def stop(self) -> None:
        """pg_ctl stop (fast: ends open sessions)."""
        self._as_owner([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"])

    def _as_owner(self, command: list[str]) -> None:
        if os.geteuid() == 0:
            command = ["runuser", "-u", USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd="/", timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")


def main() -> None:
    """Start a server that outlives this command (`make dev-postgres`), with one database.

    A server already running in --dir is left as it is.
    """
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, required=True, help="the cluster's folder")
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--db", default="dagster")
    parser.add_argument("--stop", action="store_true", help="stop the server in --dir instead")
    args = parser.parse_args()
    server = PostgresServer(args.dir.absolute(), args.port)
    if args.stop:
        server.stop()
        return
    new = not (server.data / "PG_VERSION").exists()
    if (server.data / "postmaster.pid").exists():
        print(f"PostgreSQL already running from {server.data}")  # noqa: T201
        return
    server.start()
    if new:
        server.create_database(args.db)
    print(f"PostgreSQL on 127.0.0.1:{args.port}, database {args.db}, data in {server.data}")  # noqa: T201


if __name__ == "__main__":
    main()
