"""Security: TLS always verified, no secret anywhere, and a UI no command serves to the network.

The read-only UI is a real `dagster-webserver --read-only` that is sent a launch as the UI does.

TLS runs against the replay API served over HTTPS with a self-signed certificate made for
the test; secrets are looked for in the real Dagster event log and the Lambda's real logs.
"""

import datetime as dt
import ipaddress
import logging
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import requests
from covid_pipeline_replay import jhu
from covid_pipeline_replay.server import Fault, ReplayServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from covid_pipeline.core.config import load_settings
from covid_pipeline.core.source.api import ApiError, CovidApiClient
from covid_pipeline.core.source.retry import RetryPolicy
from covid_pipeline.definitions import build_definitions
from covid_pipeline_tests.support.api import api_client, fetch_day, records
from covid_pipeline_tests.support.deployment import (
    LAUNCH_BACKFILL,
    LOCATION,
    DagsterDev,
    DagsterHome,
    materialize_days,
    project_dagster_home,
)
from covid_pipeline_tests.support.project import PROJECT_ROOT, free_port

DAY = dt.date(2021, 1, 15)


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no trust store knows, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def https_replay(tmp_path: Path) -> Iterator[tuple[ReplayServer, Path]]:
    """The replay API over HTTPS with a self-signed certificate, and that certificate."""
    cert, key = self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with ReplayServer(tls=context) as server:
        yield server, cert


def client(url: str) -> CovidApiClient:
    return api_client(url, "USA", retry=RetryPolicy(max_retries=3, backoff_s=0))


@pytest.mark.reliability(
    "Security",
    "API_URL is https:// with a certificate no trust store knows (also with CURL_CA_BUNDLE='')",
    "that day fails at once, not retried: 'TLS certificate verification failed', and how to "
    "add a CA; verification is never turned off",
)
@pytest.mark.parametrize("curl_ca_bundle", [None, ""], ids=["default", "CURL_CA_BUNDLE-empty"])
def test_security_tls_is_verified_and_never_silently_off(
    https_replay: tuple[ReplayServer, Path],
    monkeypatch: pytest.MonkeyPatch,
    curl_ca_bundle: str | None,
) -> None:
    server, _ = https_replay
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    if curl_ca_bundle is not None:  # an old requests turned verification off for ""
        monkeypatch.setenv("CURL_CA_BUNDLE", curl_ca_bundle)
    with pytest.raises(ApiError) as error:
        fetch_day(client(server.url), DAY)
    message = str(error.value)
    assert "TLS certificate verification failed for 127.0.0.1:" in message
    assert "certificate verify failed" in message and "REQUESTS_CA_BUNDLE" in message
    assert not error.value.transient
    assert server.stats()["requests"] == 0  # the handshake failed: nothing was asked


@pytest.mark.reliability(
    "Security",
    "API_URL is https:// behind a private CA, given in REQUESTS_CA_BUNDLE",
    "verified against that CA and fetched",
)
def test_security_tls_trusts_a_ca_bundle_the_user_gives(
    https_replay: tuple[ReplayServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, cert = https_replay
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    assert records(fetch_day(client(server.url), DAY)) == jhu.reports("USA", DAY)


def test_security_no_code_turns_tls_verification_off() -> None:
    sources = (PROJECT_ROOT / "covid_pipeline").rglob("*.py")
    offenders = [
        str(path)
        for path in sources
        if re.search(r"verify\s*=\s*False|CERT_NONE|check_hostname\s*=\s*False", path.read_text())
    ]
    assert offenders == []


# Shapes of real credentials: AWS access key ids, private keys, and secret assignments.
_SECRET_SHAPES = re.compile(
    r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}"
)


@pytest.mark.reliability(
    "Security",
    "a credential committed to the repository",
    "none: every tracked file is free of AWS key ids, private keys and secret keys",
)
def test_security_repository_holds_no_credentials() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    found = []
    for name in filter(None, tracked):
        path = PROJECT_ROOT / name.decode()
        if path.is_file() and path.stat().st_size < 5_000_000:
            for match in _SECRET_SHAPES.finditer(path.read_text(errors="ignore")):
                found.append(f"{name.decode()}: {match.group()[:12]}...")
    assert found == []


SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETVALUE"  # the shape of a secret key, for the test
KEY_ID = "AKIDLOGLEAKTESTKEYID1"


@pytest.mark.reliability(
    "Security",
    "AWS credentials in the environment of a Dagster run that writes to S3",
    "neither the key id nor the secret appears in the run's event log or its config (the UI)",
)
def test_security_credentials_never_reach_dagster_logs_or_ui(
    replay: ReplayServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)  # moto takes any credentials
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setattr("boto3.DEFAULT_SESSION", None)
    settings = load_settings({"API_URL": replay.url, "BUCKET_NAME": s3_bucket})
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        result = materialize_days(defs, "2021-01-15", instance=instance)
        assert result.success
        logged = [record.to_json() for record in instance.all_logs(result.run_id)]
        run = instance.get_run_by_id(result.run_id)
    assert len(logged) > 10 and run is not None
    everything = "\n".join([*logged, repr(run.run_config), repr(run.tags)])
    assert SECRET not in everything and KEY_ID not in everything


@pytest.mark.reliability(
    "Security",
    "an API that answers a huge error page (200 KB of HTML)",
    "the log and the failure show at most 200 characters of it, never the body",
)
def test_security_logs_never_dump_api_bodies(
    replay: ReplayServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = "<html>" + "x" * 200_000 + "</html>"
    monkeypatch.setattr("covid_pipeline_replay.server._ERROR_PAGE", body.encode())
    replay.set_faults([Fault(kind="html", status=404)])
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ApiError) as error:
        fetch_day(client(replay.url), DAY)
    assert "(200013 characters)" in str(error.value) and len(str(error.value)) < 500
    assert "x" * 300 not in caplog.text


# A command that serves the UI, with what follows it on the line (up to a comment or backtick).
_UI_COMMAND = re.compile(r"(dagster-webserver|dagster dev|dg dev|\$\(DG\) dev)\b([^`#\n]*)")
_HOST = re.compile(r"(?:-h|--host)[ =](\S+)")
DOCUMENTS = [PROJECT_ROOT / name for name in ("README.md", "SECURITY.md", "Makefile")] + sorted(
    (PROJECT_ROOT / "docs").glob("*.md")
)


@pytest.mark.reliability(
    "Security",
    "a command in the docs or the Makefile that would serve the UI to the network",
    "none does: each binds 127.0.0.1 (or a private address), as a test holds them to",
)
def test_security_docs_never_open_the_ui_to_the_network() -> None:
    """The open-source webserver has no authentication: no command we give binds 0.0.0.0."""
    commands = []
    for path in DOCUMENTS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in _UI_COMMAND.finditer(line):
                where = f"{path.name}:{number}"
                commands.append((where, match.group(0), _HOST.findall(match.group(2))))
    served = [(where, command, hosts) for where, command, hosts in commands if hosts]
    assert len(served) >= 4, commands  # make dev, make dev-postgres, the production lines
    for where, command, hosts in commands:
        assert "0.0.0.0" not in command and "::" not in command, where
        for host in hosts:
            address = ipaddress.ip_address(host.strip("'\""))
            assert address.is_loopback or (address.is_private and not address.is_unspecified), (
                f"{where}: {command}"
            )


@pytest.mark.reliability(
    "Security",
    "someone with only the read-only UI (`dagster-webserver --read-only`) launches a backfill",
    "refused by the server (UnauthorizedError); no backfill, no run, no request to the API",
)
def test_security_read_only_webserver_refuses_to_launch_a_backfill(
    replay: ReplayServer, tmp_path: Path
) -> None:
    port = free_port()
    home = project_dagster_home(tmp_path / "home")
    env = {**os.environ, "DAGSTER_HOME": home, "API_URL": replay.url,
           "WAREHOUSE_DIR": str(tmp_path / "warehouse")}  # fmt: skip
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-webserver")), "--read-only",
         "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        dev = DagsterDev(
            f"http://127.0.0.1:{port}", tmp_path / "warehouse", DagsterHome(Path(home), {})
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                seen = dev.query(
                    '{ assetNodeOrError(assetKey: {path: ["covid_daily_reports"]}) { __typename } }'
                )
                if seen["assetNodeOrError"]["__typename"] == "AssetNode":
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, "webserver did not start"
            time.sleep(0.5)
        params = {"assetSelection": [{"path": ["covid_daily_reports"]}],
                  "partitionNames": ["2021-01-01"], "fromFailure": False}  # fmt: skip
        assert dev.location_names() == [LOCATION]  # as `dg dev` names it: one sensor state
        answer = dev.query(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        assert answer["__typename"] == "UnauthorizedError", answer
        assert dev.instance().get_backfills() == [] and dev.instance().get_runs() == []
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    assert replay.stats()["requests"] == 0
