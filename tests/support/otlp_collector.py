"""A minimal OTLP/HTTP trace collector, run as a real peer process for integration tests.

It accepts `POST /v1/traces` (protobuf, optionally gzip-compressed), decodes each request
with the generated `opentelemetry-proto` classes, and serves what it received as JSON on
`GET /spans`: one object per span, ids in lowercase hex, attributes as plain values.

    python -m tests.support.otlp_collector PORT [PARENT_PID]
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.ports import free_port
from tests.support.waiting import wait_until

TRACES_PATH = "/v1/traces"


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(item) for item in any_value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: _value(item.value) for item in any_value.kvlist_value.values}
    return getattr(any_value, kind)


def _attributes(items: Any) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in items}


def decode(body: bytes) -> list[dict[str, Any]]:
    """The spans of one ExportTraceServiceRequest, flattened with their resource."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    {
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "name": span.name,
                        "kind": span.kind,
                        "start_ns": span.start_time_unix_nano,
                        "end_ns": span.end_time_unix_nano,
                        "attributes": _attributes(span.attributes),
                        "status_code": span.status.code,
                        "status_message": span.status.message,
                        "resource": resource,
                        "scope": scope_spans.scope.name,
                    }
                )
    return spans


class _Handler(BaseHTTPRequestHandler):
    server: _CollectorServer

    def do_POST(self) -> None:
        if self.path != TRACES_PATH:
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.headers.get("Content-Type") != "application/x-protobuf":
            self.send_error(415)
            return
        spans = decode(body)
        with self.server.lock:
            self.server.spans.extend(spans)
        # An empty ExportTraceServiceResponse: full success.
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        if self.path != "/spans":
            self.send_error(404)
            return
        with self.server.lock:
            payload = json.dumps(self.server.spans).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _CollectorServer(ThreadingHTTPServer):
    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.lock = threading.Lock()
        self.spans: list[dict[str, Any]] = []


class OtlpCollector:
    """Runs the collector in a child process; `spans()` reads what it has received."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log_path = log_dir / f"otlp-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def endpoint(self) -> str:
        """The base URL, as LAMINA_OTLP_ENDPOINT takes it."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> OtlpCollector:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.otlp_collector",
                str(self.port),
                str(os.getpid()),
            ],
            stdout=self._log,
            stderr=self._log,
        )
        wait_until(
            self._answers,
            timeout=timeout,
            interval=0.05,
            message=lambda: f"collector did not start: {self.log_path.read_text()}",
            ignoring=(OSError,),
        )
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"collector exited early: {self.log_path.read_text()}")
        self.spans()
        return True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def spans(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.endpoint}/spans", timeout=5) as response:
            result: list[dict[str, Any]] = json.loads(response.read())
        return result

    def wait_for(
        self,
        condition: Callable[[list[dict[str, Any]]], bool],
        trace_id: str,
        timeout: float = 20.0,
    ) -> list[dict[str, Any]]:
        """The spans of one trace (32 hex digits) once `condition` holds for them."""
        seen: list[dict[str, Any]] = []

        def satisfied() -> tuple[list[dict[str, Any]]] | None:
            seen[:] = [span for span in self.spans() if span["trace_id"] == trace_id]
            # In a tuple, so that a condition met by no spans still counts as met.
            return (list(seen),) if condition(seen) else None

        (spans,) = wait_until(
            satisfied,
            timeout=timeout,
            message=lambda: f"spans of trace {trace_id} never satisfied: {seen}",
        )
        return spans


def _stop_when_orphaned(server: _CollectorServer, parent: int) -> None:
    """A test run killed before its teardown must not leave the collector behind."""
    while os.getppid() == parent:
        time.sleep(0.5)
    server.shutdown()


def main() -> None:
    server = _CollectorServer(int(sys.argv[1]))
    parent = int(sys.argv[2]) if len(sys.argv) > 2 else os.getppid()
    threading.Thread(target=_stop_when_orphaned, args=(server, parent), daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
