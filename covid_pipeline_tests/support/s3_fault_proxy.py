"""A reverse proxy on 127.0.0.1 in front of an S3 server that answers some writes with faults.

Neither moto nor Ceph RGW will throttle on demand, so the tests put this proxy between boto3
and the server: it passes every request through unchanged (SigV4 signatures still verify,
since the Host header and the body are forwarded as signed) except the next `slowdowns`
PUTs, which get S3's own `503 SlowDown` answer without reaching the server.
"""

import http.client
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "content-length"}


class S3FaultProxy:
    """Forwards to `target` (e.g. http://127.0.0.1:5000); `url` is the proxy's endpoint."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.slowdowns = 0  # the next this-many PUTs answer 503 SlowDown
        self.served: Counter[str] = Counter()  # "PUT 503", "PUT 200", ...
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.proxy = self  # type: ignore[attr-defined]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        """The endpoint to give boto3 instead of the server's."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def take_slowdown(self, method: str) -> bool:
        """Whether this request gets a SlowDown instead of the server's answer."""
        with self._lock:
            if method == "PUT" and self.slowdowns > 0:
                self.slowdowns -= 1
                return True
            return False

    def count(self, method: str, status: int) -> None:
        """Count one answer."""
        with self._lock:
            self.served[f"{method} {status}"] += 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and 100-continue, as boto3 expects

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _relay(self) -> None:
        proxy: S3FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if proxy.take_slowdown(self.command):
            # Counted before answering: the client may read `served` as soon as it has the answer.
            proxy.count(self.command, 503)
            self._answer(503, [("Content-Type", "application/xml")], SLOW_DOWN)
            return
        upstream = http.client.HTTPConnection(*proxy.target, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            proxy.count(self.command, response.status)
            self._answer(response.status, kept, payload)
        finally:
            upstream.close()

    def _answer(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay
