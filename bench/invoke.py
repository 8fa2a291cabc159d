"""Invoke benchmarks: warm latency, platform overhead, throughput, cold starts, idle RSS.

Run with `.venv/bin/python -m bench.invoke` (or `make bench`). Prints figures; asserts nothing.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ROLE, KeepAlive, fresh_server, loadgen, percentile, report, time_calls

# The no-ops answer with their own resident memory when asked, so the benchmark can report an
# idle environment's RSS from inside its sandbox (its pid there is 1).
PYTHON_NOOP = (
    "def handler(event, context):\n"
    "    if event.get('rss'):\n"
    "        for line in open('/proc/self/status'):\n"
    "            if line.startswith('VmRSS:'):\n"
    "                return int(line.split()[1])\n"
    "    return None\n"
)
NODE_NOOP = (
    "exports.handler = async (event) => event.rss ? "
    "Math.round(process.memoryUsage().rss / 1024) : null;\n"
)
# 1,769 MB buys a whole vCPU; at 128 MB an environment gets 7% of one, as on AWS.
MEMORY_MB = int(os.environ.get("BENCH_MEMORY_MB", "1769"))
RUNTIMES = {
    "python": ("python3.12", "app.handler", {"app.py": PYTHON_NOOP}),
    "node": ("nodejs20.x", "app.handler", {"app.js": NODE_NOOP}),
}


def package(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def throughput(port: int, name: str, concurrency: int, total: int) -> dict[str, Any]:
    return loadgen(port, f"/2015-03-31/functions/{name}/invocations", concurrency, total)


def bench_runtime(label: str, client: Any, port: int) -> None:
    runtime, handler, files = RUNTIMES[label]
    name = f"noop-{label}"
    client.create_function(
        FunctionName=name,
        Runtime=runtime,
        Role=ROLE,
        Handler=handler,
        MemorySize=MEMORY_MB,
        Code={"ZipFile": package(files)},
    )
    http = KeepAlive(port)
    path = f"/2015-03-31/functions/{name}/invocations"
    status, body = http.request("POST", path, b"{}")
    if status != 200 or b"errorType" in body:
        print(f"{label}: not available here ({body[:200]!r})")
        return
    warm = time_calls(lambda: http.request("POST", path, b"{}"), 2000, warmup=100)
    report(f"{label} no-op warm latency (keep-alive HTTP)", warm)
    print(
        f"{label:<6} platform overhead (latency - handler time, handler ~0 ms): "
        f"p50 {percentile(warm, 0.5):.3f} ms"
    )
    idle_rss_kib = json.loads(http.request("POST", path, b'{"rss": true}')[1])
    print(f"{label:<6} idle environment RSS: {idle_rss_kib / 1024:.1f} MiB")
    http.close()
    for concurrency in (1, 8, 32):
        result = throughput(port, name, concurrency, 4000 if concurrency > 1 else 2000)
        rate = result["requests"] / result["seconds"]
        latencies = result["latencies_ms"]
        print(
            f"{label:<6} concurrency {concurrency:>2}: {rate:8.0f} invocations/s   "
            f"p50 {percentile(latencies, 0.5):6.2f} ms   p99 {percentile(latencies, 0.99):6.2f} ms"
            + (f"   errors {result['error_count']}: {result['errors']}" if result["errors"] else "")
        )
    cold: list[float] = []
    for index in range(30):
        cold_name = f"cold-{label}-{index}"
        client.create_function(
            FunctionName=cold_name,
            Runtime=runtime,
            Role=ROLE,
            Handler=handler,
            MemorySize=MEMORY_MB,
            Code={"ZipFile": package(files)},
        )
        connection = KeepAlive(port)
        started = time.perf_counter()
        connection.request("POST", f"/2015-03-31/functions/{cold_name}/invocations", b"{}")
        cold.append((time.perf_counter() - started) * 1000)
        connection.close()
    report(f"{label} cold start (new environment)", cold)


def main() -> None:
    isolation = os.environ.get("LAMINA_ISOLATION", "auto")
    with fresh_server(env={"LAMINA_IDLE_TIMEOUT": "600"}) as server:
        print(
            f"Lamina invoke benchmarks, {os.cpu_count()} cores, isolation={isolation}, "
            f"zygote={os.environ.get('LAMINA_ZYGOTE', 'on')}, MemorySize={MEMORY_MB} MB"
        )
        client = server.client()
        for label in RUNTIMES:
            bench_runtime(label, client, server.port)


if __name__ == "__main__":
    main()
