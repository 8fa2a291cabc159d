"""An S3 endpoint in front of the moto server that can hold a read until the test lets it go.

Lamina reads code from S3 through the standard `AWS_ENDPOINT_URL_S3`; pointed here, every
request is passed on to moto unchanged, except reads of a held key: those wait at the gate
until the test releases them (passed on then) or fails them (AccessDenied). Tests see a
function while Lamina is really reading its code, without touching Lamina itself.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.support.peers import MotoServer

_ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class Hold:
    """One held key: `reached` once a read arrived (`reads` counts them); `release()` or
    `fail()` lets every read of it go, waiting or still to come."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.opened = threading.Event()
        self.failing = False
        self.reads = 0

    def release(self) -> None:
        self.opened.set()

    def fail(self) -> None:
        self.failing = True
        self.opened.set()


class S3Gate:
    """A pass-through S3 endpoint on a free port, with holds on chosen keys."""

    def __init__(self, moto: MotoServer) -> None:
        self._moto = moto
        self._holds: dict[str, Hold] = {}
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.gate = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> S3Gate:
        self._thread.start()
        return self

    def release_all(self) -> None:
        for hold in self._holds.values():
            hold.release()

    def stop(self) -> None:
        self.release_all()
        self._server.shutdown()
        self._server.server_close()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def env(self) -> dict[str, str]:
        """moto's settings for a Lamina server, with S3 read through the gate."""
        return {**self._moto.env, "AWS_ENDPOINT_URL_S3": self.endpoint}

    def hold(self, key: str) -> Hold:
        """Hold every read of `key` (in any bucket) from now until released."""
        hold = self._holds[key] = Hold()
        return hold

    def _wait(self, method: str, path: str) -> Hold | None:
        if method != "GET":
            return None
        key = urlsplit(path).path.rsplit("/", 1)[-1]
        hold = self._holds.get(key)
        if hold is None:
            return None
        hold.reads += 1
        hold.reached.set()
        hold.opened.wait(60)
        return hold

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes | None) -> Any:
        connection = http.client.HTTPConnection("127.0.0.1", self._moto.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a Lamina killed mid-read leaves a held read nobody listens to any more."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _pass(self) -> None:
        gate: S3Gate = self.server.gate  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        hold = gate._wait(self.command, self.path)
        if hold is not None and hold.failing:
            self._answer(403, [("Content-Type", "application/xml")], _ACCESS_DENIED)
            return
        headers = {key: value for key, value in self.headers.items() if key.lower() != "connection"}
        status, response_headers, data = gate.forward(self.command, self.path, headers, body)
        self._answer(status, response_headers, data)

    def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        self.send_response(status)
        for key, value in headers:
            if key.lower() not in _HOP_BY_HOP:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _pass

    def log_message(self, format: str, *args: Any) -> None:
        return None
