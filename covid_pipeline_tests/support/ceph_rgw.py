"""A real S3 server for the tests: Ceph's RADOS Gateway over a one-OSD, in-memory cluster.

moto answers like S3 but accepts any credentials and never fails; RGW is a production S3
implementation that enforces SigV4, so a wrong secret is refused as AWS would refuse it.
Debian packages it (`scripts/install_ceph.sh`, which `make test` runs). The cluster is a
monitor, one memstore OSD (nothing touches the disk but logs) and radosgw, all on 127.0.0.1
ports chosen at start, in a temporary directory, with cephx off between the daemons
(only S3 clients authenticate, and that is what is tested). It comes up in about 15 seconds.
"""

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import boto3
import botocore.exceptions
import requests

from covid_pipeline_tests.support.project import free_port

BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph")
ACCESS_KEY = "COVIDPIPELINETEST01"
SECRET_KEY = "rgw-test-secret-not-used-anywhere-else"


def missing_binaries() -> list[str]:
    """The Ceph programs this machine lacks (install them with scripts/install_ceph.sh)."""
    return [name for name in BINARIES if shutil.which(name) is None]


class CephRgw:
    """A throwaway Ceph cluster with radosgw; `endpoint` is its S3 URL."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mon_port, self.rgw_port = free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{self.rgw_port}"
        self.conf = root / "ceph.conf"
        self._daemons: list[subprocess.Popen] = []

    def start(self, timeout_s: float = 90.0) -> "CephRgw":
        """Create the cluster, start its daemons, and wait until S3 answers; create the user."""
        fsid = str(uuid.uuid4())
        for folder in ("run", "log", "mon", "osd/ceph-0"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self._config(fsid))
        monmap = self.root / "monmap"
        self._run("monmaptool", "--create", "--addv", "a", f"[v2:127.0.0.1:{self.mon_port}]",
                  "--fsid", fsid, str(monmap))  # fmt: skip
        self._run("ceph-mon", "-c", str(self.conf), "--mkfs", "-i", "a", "--monmap", str(monmap))
        self._daemon("ceph-mon", "-i", "a")
        osd_uuid = str(uuid.uuid4())
        self._run("ceph", "-c", str(self.conf), "--connect-timeout", "30", "osd", "new", osd_uuid)
        self._run("ceph-osd", "-c", str(self.conf), "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
        self._daemon("ceph-osd", "-i", "0")
        self._daemon("radosgw", "-n", "client.rgw")
        self._wait_for_s3(timeout_s)
        self._run("radosgw-admin", "-c", str(self.conf), "user", "create", "--uid=covid",
                  "--display-name=covid_pipeline tests", f"--access-key={ACCESS_KEY}",
                  f"--secret={SECRET_KEY}")  # fmt: skip
        self._wait_for_user(timeout_s)
        return self

    def stop(self) -> None:
        """Stop every daemon (the cluster lives in memory: nothing is left to clean)."""
        for daemon in reversed(self._daemons):
            daemon.terminate()
        for daemon in self._daemons:
            try:
                daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()

    def _config(self, fsid: str) -> str:
        root = self.root
        return f"""[global]
fsid = {fsid}
mon host = [v2:127.0.0.1:{self.mon_port}]
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
ms client mode = crc
ms cluster mode = crc
ms service mode = crc
client mount timeout = 30
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon warn on pool no redundancy = false
osd objectstore = memstore
memstore device bytes = 1073741824
osd crush chooseleaf type = 0
run dir = {root}/run
log file = {root}/log/$name.log
admin socket = {root}/run/$name.asok
mon data = {root}/mon/$cluster-$id
osd data = {root}/osd/$cluster-$id
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{self.rgw_port}
rgw data = {root}/rgw
"""

    def _run(self, *command: str) -> None:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}"
            )

    def _daemon(self, name: str, *args: str) -> None:
        # -f: stay in the foreground, so the daemon is our child and stop() can end it.
        self._daemons.append(
            subprocess.Popen(
                [name, "-f", "-c", str(self.conf), *args],
                stdout=subprocess.DEVNULL,
                stderr=(self.root / "log" / f"{name}.stderr").open("wb"),
            )
        )

    def _wait_for_s3(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for daemon in self._daemons:
                if daemon.poll() is not None:
                    raise RuntimeError(f"{daemon.args[0]} exited; see {self.root / 'log'}")
            try:
                requests.get(self.endpoint, timeout=2)
                return
            except requests.ConnectionError:
                time.sleep(0.5)
        raise RuntimeError(f"radosgw did not answer within {timeout_s:.0f}s; see {self.root}/log")

    def _wait_for_user(self, timeout_s: float) -> None:
        # radosgw can answer InvalidAccessKeyId for a moment after the user is created.
        s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                s3.list_buckets()
                return
            except botocore.exceptions.ClientError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
