"""What Invoke's fast path buys: warm calls with and without it, beside function URL calls.

Two fresh servers, one with the fast path (the default) and one with `LAMINA_FAST_INVOKE=0`,
serve the same warm Python no-op, by Invoke and by its function URL (which takes the ASGI
path on both: a protocol-level path for URLs was measured and saved nothing, see
docs/benchmarks.md); calls go back to back over one keep-alive connection, in alternating
blocks so that the machine's drift falls on both alike. Printed per path: the server
process's CPU per call (user + system, all its threads, from /proc: the runtime's process is
not counted, it does the same work on both) and the latency p50.

Run with `.venv/bin/python -m bench.fast_path` (BENCH_QUICK=1 for fewer calls). Prints
figures; asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import KeepAlive, fresh_server, percentile
from bench.url import create as create_with_url

CALLS = 500 if os.environ.get("BENCH_QUICK") else 3000
BLOCKS = 4


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def block(port: int, pid: int, path: str, calls: int) -> tuple[float, list[float]]:
    """(server CPU per call in µs, latencies in ms) of `calls` back-to-back calls."""
    connection = KeepAlive(port)
    for _ in range(20):
        connection.request("POST", path, b"{}")
    latencies = []
    before = cpu_seconds(pid)
    for _ in range(calls):
        started = time.perf_counter()
        status, _ = connection.request("POST", path, b"{}")
        latencies.append((time.perf_counter() - started) * 1000)
        assert status == 200, status
    cpu = (cpu_seconds(pid) - before) / calls * 1e6
    connection.close()
    return cpu, latencies


def main() -> None:
    print(f"Fast paths vs ASGI path: {BLOCKS} alternating blocks of {CALLS} calls each")
    with ExitStack() as stack:
        servers: dict[str, Any] = {
            label: stack.enter_context(fresh_server(env={"LAMINA_FAST_INVOKE": flag}))
            for label, flag in (("fast", "1"), ("asgi", "0"))
        }
        paths = {label: create_with_url(server.client()) for label, server in servers.items()}
        figures: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
        for _ in range(BLOCKS):
            for label, server in servers.items():
                pid = server.process.pid
                for kind, path in (
                    ("Invoke", "/2015-03-31/functions/url-bench/invocations"),
                    ("URL", paths[label]),
                ):
                    cpu, latencies = block(server.port, pid, path, CALLS)
                    cpus, all_latencies = figures.setdefault((kind, label), ([], []))
                    cpus.append(cpu)
                    all_latencies.extend(latencies)
    for kind in ("Invoke", "URL"):
        for label in ("asgi", "fast"):
            cpus, latencies = figures[(kind, label)]
            print(
                f"{kind:<7}{label:<5} server CPU {statistics.median(cpus):6.0f} µs/call "
                f"(blocks {min(cpus):.0f}-{max(cpus):.0f})   "
                f"p50 {percentile(latencies, 0.5):.3f} ms   "
                f"p99 {percentile(latencies, 0.99):.3f} ms"
            )
        fast = statistics.median(figures[(kind, "fast")][0])
        asgi = statistics.median(figures[(kind, "asgi")][0])
        print(
            f"{kind:<7}fast path saves {asgi - fast:.0f} µs of server CPU per call "
            f"({1 - fast / asgi:.0%})"
        )


if __name__ == "__main__":
    main()
