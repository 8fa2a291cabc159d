"""The clients the suite drives targets with: one keep-alive connection, and the load
generator (`bench.loadgen`) in a process of its own so its CPU is not the server's."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class InvokeFailed(RuntimeError):
    """A target answered with an error where the workload expects success."""


class Connection:
    """One persistent HTTP/1.1 connection: measures the server, not a client library."""

    # Servers close idle keep-alive connections (uvicorn after 5 s): reconnect before
    # timing a request rather than time a reconnection.
    IDLE_RECONNECT_S = 1.0

    def __init__(self, port: int, timeout: float = 120) -> None:
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self._last_used = 0.0

    def post(self, path: str, body: bytes) -> tuple[float, bytes]:
        """Milliseconds from sending to the last byte of the answer, and the answer."""
        if time.monotonic() - self._last_used > self.IDLE_RECONNECT_S:
            self._connection.close()
            self._connection.connect()
        started = time.perf_counter()
        self._connection.request(
            "POST", path, body=body, headers={"Content-Type": "application/json"}
        )
        response = self._connection.getresponse()
        answer = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        self._last_used = time.monotonic()
        # Lamina and AWS flag a function error in a header; serverless-offline in another.
        failed = response.getheader("X-Amz-Function-Error") or response.getheader(
            "x-amzn-ErrorType"
        )
        if response.status != 200 or failed:
            raise InvokeFailed(f"{path}: HTTP {response.status} {failed or ''} {answer[:300]!r}")
        return elapsed, answer

    def close(self) -> None:
        self._connection.close()


def handler_ms(answer: bytes) -> float:
    """The time the handler reported spending itself."""
    return float(json.loads(answer).get("ms", 0.0))


@dataclass
class LoadResult:
    """What one load-generator run saw."""

    seconds: float
    requests: int
    latencies_ms: list[float]
    errors: list[str]
    error_count: int = 0
    timeline: list[tuple[float, float]] = field(default_factory=list)
    # With `keep_bodies`: every answer, and when the first requests went out (epoch seconds).
    bodies: list[str] = field(default_factory=list)
    started_at: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def load(
    port: int,
    path: str,
    concurrency: int,
    total: int,
    body: bytes = b"{}",
    duration: float | None = None,
    keep_bodies: bool = False,
) -> LoadResult:
    """`total` requests over `concurrency` keep-alive connections (or as many as fit in
    `duration` seconds), from a separate process."""
    with tempfile.NamedTemporaryFile() as body_file:
        body_file.write(body)
        body_file.flush()
        args = [str(port), path, str(concurrency), str(total), body_file.name]
        if duration is not None:
            args.append(str(duration))
        if keep_bodies:
            args.insert(0, "--bodies")
        finished = subprocess.run(
            [sys.executable, "-m", "bench.loadgen", *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
            timeout=900,
        )
    if finished.returncode != 0:
        # The load generator's own traceback says what the server did (reset, closed, ...).
        raise InvokeFailed(f"load generator failed: {finished.stderr.strip()[-400:]}")
    output = finished.stdout
    raw = json.loads(output)
    return LoadResult(
        seconds=raw["seconds"],
        requests=raw["requests"],
        latencies_ms=raw["latencies_ms"],
        errors=raw["errors"],
        error_count=raw.get("error_count", len(raw["errors"])),
        timeline=[(t, ms) for t, ms in raw.get("timeline", [])],
        bodies=raw.get("bodies", []),
        started_at=raw.get("started_at", 0.0),
    )
