"""The warm path, for this tree or for two trees side by side: what a change to the data
plane moved, with the machine's drift falling on both sides alike.

A server per source tree serves the same warm Python no-op (1,769 MB: one whole vCPU, so
no CPU cap is in the figure). In alternating blocks, each server gets, on one keep-alive
connection, back-to-back calls, with the server process's CPU per call (user + system, all
its threads, from /proc: the runtime's process does the same work on both sides) and the
latency p50; then a load generator in its own process keeps 8 connections busy, for
invocations per second. Printed per tree: the medians over blocks, with their range.

Run: `.venv/bin/python -m bench.warm_path [TREE [TREE]]`, where a TREE is a checkout of
Lamina (default: this one), e.g. a `git worktree` of an older commit to compare with.
BENCH_QUICK=1 takes fewer blocks and calls. Prints figures; asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fast_path import cpu_seconds
from bench.harness import ROLE, KeepAlive, fresh_server, loadgen
from bench.network import package

QUICK = bool(os.environ.get("BENCH_QUICK"))
BLOCKS = 2 if QUICK else 10
CALLS = 500 if QUICK else 3000
CONCURRENCY = 8
ROOT = Path(__file__).resolve().parent.parent
PATH = "/2015-03-31/functions/warm/invocations"
NOOP = "def handler(event, context):\n    return {}\n"


def sequential(
    port: int, pid: int, cpu_of: Callable[[int], float] = cpu_seconds
) -> tuple[float, float]:
    """(server CPU per call in µs, latency p50 in ms) of back-to-back calls; `cpu_of`
    reads the server's CPU seconds (its own process's by default)."""
    connection = KeepAlive(port)
    for _ in range(50):
        connection.request("POST", PATH, b"{}")
    latencies = []
    before = cpu_of(pid)
    for _ in range(CALLS):
        started = time.perf_counter()
        status, _ = connection.request("POST", PATH, b"{}")
        latencies.append((time.perf_counter() - started) * 1000)
        assert status == 200, status
    cpu = (cpu_of(pid) - before) / CALLS * 1e6
    connection.close()
    return cpu, statistics.median(latencies)


def main() -> None:
    trees = [Path(arg).resolve() for arg in sys.argv[1:]] or [ROOT]
    figures: dict[Path, dict[str, list[float]]] = {
        tree: {"cpu": [], "p50": [], "rate": []} for tree in trees
    }
    with ExitStack() as stack:
        servers = []
        for tree in trees:
            env = {"LAMINA_IDLE_TIMEOUT": "600", "PYTHONPATH": str(tree / "src")}
            server = stack.enter_context(fresh_server(env=env))
            server.client().create_function(
                FunctionName="warm",
                Runtime="python3.12",
                Role=ROLE,
                Handler="index.handler",
                MemorySize=1769,
                Code={"ZipFile": package({"index.py": NOOP})},
            )
            # Every environment the concurrent calls need, started before any block.
            loadgen(server.port, PATH, CONCURRENCY, CALLS)
            servers.append((tree, server))
        for block in range(BLOCKS):
            for tree, server in servers if block % 2 == 0 else servers[::-1]:
                assert server.process is not None
                cpu, p50 = sequential(server.port, server.process.pid)
                result = loadgen(server.port, PATH, CONCURRENCY, CALLS * 3)
                assert not result["errors"], result["errors"]
                figures[tree]["cpu"].append(cpu)
                figures[tree]["p50"].append(p50)
                figures[tree]["rate"].append(result["requests"] / result["seconds"])
    for tree, taken in figures.items():
        cpu, p50, rate = taken["cpu"], taken["p50"], taken["rate"]
        print(
            f"{tree}: server CPU {statistics.median(cpu):.0f} µs/call ({min(cpu):.0f}-"
            f"{max(cpu):.0f}), p50 {statistics.median(p50):.3f} ms, {CONCURRENCY} connections "
            f"{statistics.median(rate):,.0f}/s ({min(rate):,.0f}-{max(rate):,.0f}); "
            f"{BLOCKS} blocks"
        )


if __name__ == "__main__":
    main()
