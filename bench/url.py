"""Function URL benchmark: the same warm Python function through its URL and through Invoke.

Run with `.venv/bin/python -m bench.url` (or `make bench`). Prints requests per second and
p50/p99 latency for both paths, sequentially (one keep-alive connection) and under load
(`bench.loadgen` in its own process), and the URL's overhead relative to Invoke. The aim is
a URL within 20% of Invoke. On a shared machine the rates swing with the neighbours' load;
the server's CPU time per request (Linux /proc) is printed too, as it barely does.
Asserts nothing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    ROLE,
    KeepAlive,
    fresh_server,
    loadgen,
    percentile,
    time_calls,
    url_path,
)
from bench.invoke import package

HANDLER = "def handler(event, context):\n    return {'ok': True, 'n': 1}\n"
# A whole vCPU, as in bench.invoke, so the handler's share of CPU does not dominate.
MEMORY_MB = int(os.environ.get("BENCH_MEMORY_MB", "1769"))
SEQUENTIAL_CALLS = 2000
LOAD_CALLS = 4000


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU the server process has used: a measure a busy neighbour barely moves."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def line(label: str, rate: float, samples: list[float]) -> str:
    return (
        f"{label:<28} {rate:8.0f} req/s   p50 {percentile(samples, 0.5):6.2f} ms   "
        f"p99 {percentile(samples, 0.99):6.2f} ms"
    )


def overhead(url: float, invoke: float) -> str:
    return f"{(url / invoke - 1) * 100:+.1f}%"


def create(client: Any) -> str:
    """The function, its public URL and the two permissions AWS requires; the URL's path."""
    client.create_function(
        FunctionName="url-bench",
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        MemorySize=MEMORY_MB,
        Code={"ZipFile": package({"app.py": HANDLER})},
    )
    client.add_permission(
        FunctionName="url-bench",
        StatementId="url-public",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="NONE",
    )
    client.add_permission(
        FunctionName="url-bench",
        StatementId="url-invoke",
        Action="lambda:InvokeFunction",
        Principal="*",
        InvokedViaFunctionUrl=True,
    )
    url = client.create_function_url_config(FunctionName="url-bench", AuthType="NONE")
    return url_path(url["FunctionUrl"])


def main() -> None:
    with fresh_server(env={"LAMINA_IDLE_TIMEOUT": "600"}) as server:
        print(
            f"Lamina function URL benchmark, {os.cpu_count()} cores, "
            f"isolation={os.environ.get('LAMINA_ISOLATION', 'auto')}, MemorySize={MEMORY_MB} MB"
        )
        url_path = create(server.client())
        paths = {"Invoke": "/2015-03-31/functions/url-bench/invocations", "URL": url_path}
        http = KeepAlive(server.port)
        for label, path in paths.items():
            status, body = http.request("POST", path, b"{}")
            if status != 200 or json.loads(body) != {"ok": True, "n": 1}:
                print(f"{label}: unexpected answer {status} {body[:200]!r}")
                return
        sequential: dict[str, list[float]] = {}
        cpu: dict[str, float] = {}
        pid = server.process.pid if server.process else 0
        # Interleaved rounds, so a neighbour's burst of CPU use hits both paths alike.
        for _ in range(2):
            for label, path in paths.items():
                before = server_cpu_seconds(pid)
                samples = time_calls(
                    lambda path=path: http.request("POST", path, b"{}"),
                    SEQUENTIAL_CALLS // 2,
                    warmup=50,
                )
                cpu[label] = cpu.get(label, 0.0) + server_cpu_seconds(pid) - before
                sequential.setdefault(label, []).extend(samples)
        http.close()
        print("sequential, one keep-alive connection:")
        for label, samples in sequential.items():
            rate = len(samples) / (sum(samples) / 1000)
            # Warm-up calls are included in the CPU time; they are few.
            per_call = cpu[label] / (len(samples) + 100) * 1000
            print("  " + line(label, rate, samples) + f"   server CPU {per_call:.3f} ms/req")
        p50 = {label: percentile(samples, 0.5) for label, samples in sequential.items()}
        print(f"  URL p50 latency vs Invoke: {overhead(p50['URL'], p50['Invoke'])}")
        print(f"  URL server CPU vs Invoke: {overhead(cpu['URL'], cpu['Invoke'])}")
        for concurrency in (8, 32):
            # Scale out first, so neither path pays for starting the extra environments.
            loadgen(server.port, paths["Invoke"], concurrency, concurrency * 20)
            runs: dict[str, list[dict[str, Any]]] = {label: [] for label in paths}
            load_cpu = dict.fromkeys(paths, 0.0)
            for _ in range(2):  # interleaved, as above
                for label, path in paths.items():
                    before = server_cpu_seconds(pid)
                    runs[label].append(loadgen(server.port, path, concurrency, LOAD_CALLS // 2))
                    load_cpu[label] += server_cpu_seconds(pid) - before
            print(
                f"concurrency {concurrency} ({LOAD_CALLS} requests, "
                "load generator in its own process):"
            )
            rates = {}
            for label, results in runs.items():
                rates[label] = sum(r["requests"] for r in results) / sum(
                    r["seconds"] for r in results
                )
                latencies = [sample for r in results for sample in r["latencies_ms"]]
                errors = [error for r in results for error in r["errors"]]
                shown = f"   errors: {errors}" if errors else ""
                per_call = load_cpu[label] / len(latencies) * 1000
                print(
                    "  "
                    + line(label, rates[label], latencies)
                    + f"   server CPU {per_call:.3f} ms/req"
                    + shown
                )
            print(f"  URL throughput vs Invoke: {overhead(rates['URL'], rates['Invoke'])}")
            print(f"  URL server CPU vs Invoke: {overhead(load_cpu['URL'], load_cpu['Invoke'])}")


if __name__ == "__main__":
    main()
