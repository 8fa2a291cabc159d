"""Shared benchmark plumbing: a fresh server, timing, percentiles."""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.server import LaminaServer

# Lamina does not check the role yet; every benchmark function names this one.
ROLE = "arn:aws:iam::000000000000:role/bench"


@contextmanager
def fresh_server(*args: str, env: dict[str, str] | None = None) -> Iterator[LaminaServer]:
    with tempfile.TemporaryDirectory(prefix="lamina-bench-") as tmp:
        server = LaminaServer(Path(tmp) / "data", env=env).start(*args)
        try:
            yield server
        finally:
            server.stop()


def url_path(function_url: str) -> str:
    """The path form of a `FunctionUrl` Lamina handed out, in either form:
    `http://<id>.lambda-url.<region>.localhost:<port>/`, or `http://127.0.0.1:<port>/lambda-url/<id>/`
    where `*.localhost` does not resolve on the machine."""
    address = function_url.split("//", 1)[1]
    if "/lambda-url/" in address:
        url_id = address.split("/lambda-url/", 1)[1].split("/", 1)[0]
    else:
        url_id = address.split(".", 1)[0]
    return f"/lambda-url/{url_id}/"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def time_calls(call: Callable[[], object], count: int, warmup: int = 10) -> list[float]:
    """Milliseconds per call."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def loadgen(port: int, path: str, concurrency: int, total: int) -> dict[str, Any]:
    """`bench.loadgen` in a child process: POST `{}` to `path` over keep-alive connections."""
    with tempfile.NamedTemporaryFile() as body:
        body.write(b"{}")
        body.flush()
        output = subprocess.run(
            [
                *(sys.executable, "-m", "bench.loadgen"),
                *(str(port), path, str(concurrency), str(total), body.name),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        ).stdout
    result: dict[str, Any] = json.loads(output)
    return result


def report(label: str, samples: list[float]) -> None:
    print(
        f"{label:<44} p50 {percentile(samples, 0.5):8.2f} ms   "
        f"p99 {percentile(samples, 0.99):8.2f} ms   "
        f"mean {statistics.fmean(samples):8.2f} ms   n={len(samples)}"
    )


class KeepAlive:
    """One persistent HTTP/1.1 connection; measures the server, not a client library."""

    def __init__(self, port: int) -> None:
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self._connection.request(method, path, body=body, headers=headers)
        response = self._connection.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self._connection.close()
