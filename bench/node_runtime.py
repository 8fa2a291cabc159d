"""The Node runtime on its own: cold start, warm latency, server CPU per warm invoke, idle PSS.

Each round starts a fresh server (default isolation and templates), then measures:
- warm: sequential no-op invokes over one keep-alive connection (latency p50) and the CPU
  the server's whole process tree spent per invoke (environments included);
- idle: the proportional set size of a runtime, read from /proc/<pid>/smaps_rollup: the warm
  environment's after its thousands of calls, idle for 1 s and then for 16 s (V8 may give
  memory back once it has been idle 8 s), and, after 1 s, the mean over
  the environments the cold starts made, after their one call each (they share the pages of
  the node executable, so this is closer to what one more environment costs);
- cold: the first invoke of new functions, timed at the client: one at a time, 250 ms apart
  (runtimes started ahead are ready again by the next), and back to back (as many as the
  machine starts: each needs a whole Node start-up, ahead or not).
Figures are medians over the rounds (the machine is shared: single runs are noisy).

Run: `.venv/bin/python -m bench.node_runtime` (BENCH_ROUNDS, BENCH_MEMORY_MB to change).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ROLE, KeepAlive, fresh_server, percentile
from bench.invoke import package
from bench.suite import proctree

NODE_NOOP = "exports.handler = async () => null;\n"
RUNTIME = os.environ.get("BENCH_NODE_RUNTIME", "nodejs20.x")
MEMORY_MB = int(os.environ.get("BENCH_MEMORY_MB", "1769"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WARM_CALLS = int(os.environ.get("BENCH_WARM_CALLS", "2000"))
COLD_STARTS = int(os.environ.get("BENCH_COLD_STARTS", "20"))
IDLE_SETTLE_S = float(os.environ.get("BENCH_IDLE_SETTLE_S", "15"))
COLD_GAP_S = 0.25


def create(client: object, name: str) -> None:
    client.create_function(  # type: ignore[attr-defined]
        FunctionName=name,
        Runtime=RUNTIME,
        Role=ROLE,
        Handler="index.handler",
        MemorySize=MEMORY_MB,
        Code={"ZipFile": package({"index.js": NODE_NOOP})},
    )


def pss_anon_mib(pids: list[int]) -> float:
    """The anonymous part of the PSS: the runtime's own heap and data, not the pages of the
    node executable, which every Node environment shares."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                lines = [line for line in rollup if line.startswith("Pss_Anon:")]
            total += sum(int(line.split()[1]) for line in lines)
        except OSError:
            continue
    return total / 1024


def runtime_pids(root: int, before: set[int], waiting: bool = False) -> list[int]:
    """The node processes that appeared under the server since `before`: environments, or
    with `waiting`, the runtimes started ahead that wait for a function (blocked reading
    their assignment)."""
    found = []
    for pid in set(proctree.tree(root)) - before:
        try:
            executable = os.readlink(f"/proc/{pid}/exe")
            with open(f"/proc/{pid}/wchan") as wchan:
                blocked_on_pipe = wchan.read().endswith("pipe_read")
            with open(f"/proc/{pid}/environ", "rb") as environ:
                started_ahead = b"LAMINA_ASSIGNMENT_FD=" in environ.read()
        except OSError:
            continue
        if os.path.basename(executable).startswith("node") and waiting == (
            started_ahead and blocked_on_pipe
        ):
            found.append(pid)
    return found


def one_round(index: int) -> dict[str, float]:
    with fresh_server(env={"LAMINA_IDLE_TIMEOUT": "600"}) as server:
        assert server.process is not None
        root = server.process.pid
        client = server.client()
        figures: dict[str, float] = {}

        before = set(proctree.tree(root))
        create(client, "warm")
        path = "/2015-03-31/functions/warm/invocations"
        http = KeepAlive(server.port)
        status, body = http.request("POST", path, b"{}")
        if status != 200 or body != b"null":
            raise SystemExit(f"the no-op failed: {status} {body[:300]!r}")
        for _ in range(200):
            http.request("POST", path, b"{}")
        started_cpu = proctree.cpu_seconds(root)
        samples = []
        for _ in range(WARM_CALLS):
            started = time.perf_counter()
            http.request("POST", path, b"{}")
            samples.append((time.perf_counter() - started) * 1000)
        figures["warm_p50_ms"] = percentile(samples, 0.5)
        figures["cpu_ms_per_warm"] = (proctree.cpu_seconds(root) - started_cpu) * 1000 / WARM_CALLS
        http.close()

        time.sleep(1.0)
        pids = runtime_pids(root, before)
        figures["idle_pss_mib"] = proctree.pss_mib(pids) if pids else float("nan")
        figures["idle_anon_mib"] = pss_anon_mib(pids) if pids else float("nan")
        # V8's memory reducer starts 8 s after the last activity.
        time.sleep(IDLE_SETTLE_S)
        figures["settled_pss_mib"] = proctree.pss_mib(pids) if pids else float("nan")
        figures["settled_anon_mib"] = pss_anon_mib(pids) if pids else float("nan")

        before = set(proctree.tree(root))
        for figure, gap in (("cold_p50_ms", COLD_GAP_S), ("cold_back_to_back_p50_ms", 0.0)):
            names = [f"{figure}-{index}-{number}" for number in range(COLD_STARTS)]
            for name in names:
                create(client, name)
            cold = []
            for name in names:
                time.sleep(gap)
                connection = KeepAlive(server.port)
                started = time.perf_counter()
                connection.request("POST", f"/2015-03-31/functions/{name}/invocations", b"{}")
                cold.append((time.perf_counter() - started) * 1000)
                connection.close()
            figures[figure] = percentile(cold, 0.5)
        time.sleep(1.0)
        pids = runtime_pids(root, before)
        figures["fresh_idle_pss_mib"] = proctree.pss_mib(pids) / len(pids) if pids else float("nan")
        figures["fresh_idle_anon_mib"] = pss_anon_mib(pids) / len(pids) if pids else float("nan")
        waiting = runtime_pids(root, set(), waiting=True)
        figures["waiting_runtimes"] = len(waiting)
        figures["waiting_pss_mib"] = proctree.pss_mib(waiting) if waiting else 0.0
        return figures


def main() -> None:
    print(
        f"Lamina Node runtime ({RUNTIME}), {os.cpu_count()} cores, "
        f"isolation={os.environ.get('LAMINA_ISOLATION', 'auto')}, MemorySize={MEMORY_MB} MB, "
        f"{ROUNDS} rounds"
    )
    rounds = []
    for index in range(ROUNDS):
        figures = one_round(index)
        rounds.append(figures)
        print(f"round {index + 1}: " + "  ".join(f"{k} {v:.3f}" for k, v in figures.items()))
    labels = {
        "cold_p50_ms": "cold start p50 (new environment), 250 ms apart",
        "cold_back_to_back_p50_ms": "cold start p50, back to back",
        "warm_p50_ms": "warm no-op latency p50",
        "cpu_ms_per_warm": "server CPU per warm invoke",
        "idle_pss_mib": "idle PSS, warm environment, after 1 s",
        "idle_anon_mib": "  of which anonymous",
        "settled_pss_mib": f"idle PSS, warm environment, {1 + IDLE_SETTLE_S:.0f} s",
        "settled_anon_mib": "  of which anonymous",
        "fresh_idle_pss_mib": f"idle PSS, mean of the {2 * COLD_STARTS} after 1 call",
        "fresh_idle_anon_mib": "  of which anonymous",
        "waiting_runtimes": "runtimes started ahead, waiting",
        "waiting_pss_mib": "  their PSS, all together",
    }
    units = {key: "MiB" for key in labels if "_mib" in key} | {"waiting_runtimes": ""}
    for key, label in labels.items():
        values = [figures[key] for figures in rounds]
        print(
            f"{label:<36} median {statistics.median(values):8.3f} {units.get(key, 'ms')}"
            f"   (rounds: {', '.join(f'{value:.3f}' for value in values)})"
        )


if __name__ == "__main__":
    main()
