"""A local Lambda Runtime API on 127.0.0.1, driving the real runtime client (awslambdaric).

The Lambda service cannot run here, but its Runtime API is a small documented HTTP contract
(https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html): the runtime client long-polls
`GET /2018-06-01/runtime/invocation/next` for an event and posts the handler's answer to
`.../invocation/{id}/response` or `.../invocation/{id}/error`. `LambdaRuntime` serves it and runs
the packaged function in its own process, with the interpreter and environment given.
"""

import base64
import glob
import io
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from covid_pipeline_tests.support.project import PROJECT_ROOT

_PREFIX = "/2018-06-01/runtime"


class LambdaRuntime:
    """The Runtime API plus one function process; `invoke` sends an event and waits."""

    def __init__(self, python: str, task_root: Path, handler: str, env: dict[str, str]) -> None:
        self._events: queue.Queue[tuple[str, bytes, int]] = queue.Queue()
        self._results: dict[str, tuple[str, Any]] = {}
        self._done = threading.Condition()
        self.init_error: Any = None
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.runtime = self  # type: ignore[attr-defined]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        host, port = self._httpd.server_address[:2]
        # One log per container: containers run at once, and each invocation's tail is its own.
        self.log_path = task_root.parent / f"function-{uuid.uuid4().hex[:8]}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            # -S: no site-packages, as in Lambda only the package's own tree is importable.
            [python, "-S", "-m", "awslambdaric", handler],
            cwd=task_root,
            env={
                **env,
                "AWS_LAMBDA_RUNTIME_API": f"{host}:{port}",
                "LAMBDA_TASK_ROOT": str(task_root),
                "_HANDLER": handler,
                "AWS_LAMBDA_FUNCTION_NAME": "covid-daily-reports-backfill",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            },
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def invoke(
        self, event: Any, timeout_s: float = 120.0, deadline_s: float = 900.0
    ) -> tuple[str, Any]:
        """Send `event`; return ("response", answer) or ("error", error document)."""
        request_id = str(uuid.uuid4())
        deadline_ms = int((time.time() + deadline_s) * 1000)
        self._events.put((request_id, json.dumps(event).encode(), deadline_ms))
        give_up = time.monotonic() + timeout_s
        with self._done:
            while request_id not in self._results and time.monotonic() < give_up:
                if self.init_error is not None or self.process.poll() is not None:
                    break  # the function cannot answer: say why below
                self._done.wait(timeout=0.2)
            if request_id in self._results:
                return self._results.pop(request_id)
        raise AssertionError(
            f"no answer (init error {self.init_error}, exit code {self.process.poll()}):\n"
            f"{self.log_path.read_text()[-4000:]}"
        )

    def stop(self) -> None:
        """Stop the function process and the server."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._log.close()

    def _record(self, request_id: str, kind: str, body: Any) -> None:
        with self._done:
            self._results[request_id] = (kind, body)
            self._done.notify_all()

    def _record_init_error(self, body: Any) -> None:
        with self._done:
            self.init_error = body
            self._done.notify_all()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def runtime(self) -> LambdaRuntime:
        return self.server.runtime  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        if self.path != f"{_PREFIX}/invocation/next":
            self._answer(404, b"{}")
            return
        request_id, body, deadline_ms = self.runtime._events.get()  # long poll, as Lambda does
        self._answer(
            200,
            body,
            {
                "Lambda-Runtime-Aws-Request-Id": request_id,
                "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": (
                    "arn:aws:lambda:us-east-1:123456789012:function:covid-daily-reports-backfill"
                ),
                "Lambda-Runtime-Trace-Id": "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Sampled=0",
            },
        )

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        document = json.loads(body) if body else None
        parts = self.path.removeprefix(_PREFIX).strip("/").split("/")
        if parts == ["init", "error"]:
            self.runtime._record_init_error(document)
        elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            self.runtime._record(parts[1], parts[2], document)
        else:
            self._answer(404, b"{}")
            return
        self._answer(202, b'{"status": "OK"}')

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


AWSLAMBDARIC = "awslambdaric==4.2.2"  # what AWS's python3.12 runtime runs; for the target only
LOG_TAIL_BYTES = 4096  # Invoke's LogResult: the last 4 KB of the invocation's log


def python312() -> str:
    """A real Python 3.12 (pyenv's shims answer to the name but may not run it)."""
    candidates = sorted(glob.glob("/root/.pyenv/versions/3.12*/bin/python3.12"))
    candidates += [found] if (found := shutil.which("python3.12")) else []
    for candidate in candidates:
        version = subprocess.run([candidate, "--version"], capture_output=True, text=True)
        if version.returncode == 0 and version.stdout.startswith("Python 3.12"):
            return candidate
    pytest.skip("no Python 3.12 on this machine: the packaged handler needs the Lambda runtime's")


def build_function_root(build: Path) -> Path:
    """Build the zip and unpack it into an empty folder, the runtime client beside it.

    As Lambda unpacks a function into /var/task, with its runtime client in /var/runtime.
    """
    zip_path = build / "lambda.zip"
    script = PROJECT_ROOT / "scripts" / "build_lambda.py"
    subprocess.run([sys.executable, str(script), "--out", str(zip_path)], check=True)
    task = build / "task"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(task)
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--target", str(build / "runtime"),
            "--only-binary=:all:", "--implementation", "cp", "--python-version", "3.12",
            "--platform", "manylinux2014_x86_64", AWSLAMBDARIC,
        ],
        check=True,
    )  # fmt: skip
    return task


def function_environment(
    task: Path, api_url: str, bucket: str, prefix: str, aws_endpoint: str
) -> dict[str, str]:
    """The function's environment as the template sets it, and nothing of this machine's."""
    keep = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TZ") if name in os.environ}
    return {
        **keep,
        "PYTHONPATH": f"{task}:{task.parent / 'runtime'}",
        "BUCKET_NAME": bucket, "API_URL": api_url, "ISO_CODE": "USA", "PREFIX": prefix,
        "FETCH_CONCURRENCY": "4", "HTTP_BACKOFF": "0",
        # The test's S3 server's credentials (moto takes any; Ceph RGW checks them).
        "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": aws_endpoint,
    }  # fmt: skip


class LocalLambdaClient:
    """Lambda's Invoke contract (RequestResponse) over local runtimes: one process per container.

    Answers like boto3's `lambda` client: `Payload` (a readable body), `StatusCode`,
    `FunctionError` ("Unhandled") when the handler raised, and with LogType="Tail" a
    base64 `LogResult` holding the last 4 KB of the invocation's log, END and REPORT lines last.
    Concurrent invocations go to idle containers, so a container is reused warm, as in Lambda.
    """

    def __init__(self, runtimes: list[LambdaRuntime]) -> None:
        self._idle: queue.Queue[LambdaRuntime] = queue.Queue()
        for runtime in runtimes:
            self._idle.put(runtime)
        self.invocations: dict[int, int] = {}  # container pid -> invocations served

    def invoke(
        self,
        FunctionName: str,
        Payload: str | bytes,
        InvocationType: str = "RequestResponse",
        LogType: str = "None",
        **_: Any,
    ) -> dict[str, Any]:
        """Run one invocation in an idle container."""
        assert InvocationType == "RequestResponse", "only synchronous invocations are modelled"
        runtime = self._idle.get()
        try:
            start = runtime.log_path.stat().st_size
            began = time.monotonic()
            kind, body = runtime.invoke(json.loads(Payload))
            took_ms = (time.monotonic() - began) * 1000
            log = runtime.log_path.read_bytes()[start:]
            self.invocations[runtime.process.pid] = self.invocations.get(runtime.process.pid, 0) + 1
        finally:
            self._idle.put(runtime)
        request_id = str(uuid.uuid4())
        log += (
            f"END RequestId: {request_id}\nREPORT RequestId: {request_id}\t"
            f"Duration: {took_ms:.2f} ms\tBilled Duration: {took_ms:.0f} ms\t"
            "Memory Size: 1769 MB\n"
        ).encode()
        response: dict[str, Any] = {
            "StatusCode": 200,
            "ExecutedVersion": "$LATEST",
            "Payload": io.BytesIO(json.dumps(body).encode()),
        }
        if LogType == "Tail":
            response["LogResult"] = base64.b64encode(log[-LOG_TAIL_BYTES:]).decode()
        if kind == "error":
            response["FunctionError"] = "Unhandled"
        return response
