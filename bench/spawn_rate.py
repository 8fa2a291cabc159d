"""New environments per second as environments accumulate, for this tree or two side by side.

A fresh server per tree (default isolation and template) takes bursts of simultaneous first
calls to a new Python function, one new function per burst, each call keeping its
environment busy for a while so that each wants one of its own (the suite's `spawn`
workload, repeated). The environments of earlier bursts stay alive, idle, so the bursts
measure how the rate holds up with 0, N, 2N, ... environments alive. Each answer names its
environment and when its handler began; the rate is the distinct environments over the time
from sending to the last one's first call. Also printed: the server process's CPU (all its
threads) per environment over each burst, and the mounts in its mount namespace after it
(every new mount namespace copies them).

Run: `.venv/bin/python -m bench.spawn_rate [TREE [TREE]]`, where a TREE is a checkout of
Lamina (default: this one), e.g. a `git worktree` of an older commit; trees alternate, each
`BENCH_REPEATS` times (default 2). BENCH_SPAWN (calls per burst, default 200), BENCH_BURSTS
(default 4), BENCH_HOLD_S (default 2); BENCH_QUICK=1 for 20 calls, 2 bursts, 1 repeat.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fast_path import cpu_seconds
from bench.harness import ROLE, fresh_server
from bench.invoke import package
from bench.suite.client import load
from bench.suite.handlers import PYTHON
from bench.suite.workloads import environments_made

QUICK = bool(os.environ.get("BENCH_QUICK"))
CALLS = int(os.environ.get("BENCH_SPAWN", "20" if QUICK else "200"))
BURSTS = int(os.environ.get("BENCH_BURSTS", "2" if QUICK else "4"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "1" if QUICK else "2"))
HOLD_S = float(os.environ.get("BENCH_HOLD_S", "2"))
ROOT = Path(__file__).resolve().parent.parent


def mounts_of(pid: int) -> int:
    with open(f"/proc/{pid}/mountinfo") as mountinfo:
        return sum(1 for _ in mountinfo)


class Burst(NamedTuple):
    per_s: float  # environments made a second
    server_cpu_ms: float  # the server process's CPU (all its threads) per environment
    mounts: int  # in the server's mount namespace, after the burst


def bursts(tree: Path) -> list[Burst]:
    env = {"LAMINA_IDLE_TIMEOUT": "600", "PYTHONPATH": str(tree / "src")}
    figures = []
    with fresh_server(env=env) as server:
        assert server.process is not None
        client = server.client()
        body = json.dumps({"seconds": HOLD_S}).encode()
        for index in range(BURSTS):
            name = f"spawn-{index}"
            client.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=ROLE,
                Handler="spawn.handler",
                MemorySize=1769,
                Code={"ZipFile": package({"spawn.py": PYTHON["spawn"]})},
            )
            time.sleep(3.0)  # the pools refilled after the burst before
            cpu_before = cpu_seconds(server.process.pid)
            result = load(
                server.port,
                f"/2015-03-31/functions/{name}/invocations",
                CALLS,
                CALLS,
                body,
                keep_bodies=True,
            )
            if result.errors:
                raise SystemExit(f"burst {index}: {result.errors}")
            made, last_s = environments_made(result.bodies, result.started_at)
            per_s = made / last_s
            if made != CALLS:
                raise SystemExit(f"burst {index}: {made} environments for {CALLS} calls")
            cpu_ms = (cpu_seconds(server.process.pid) - cpu_before) * 1000 / made
            figures.append(Burst(per_s, cpu_ms, mounts_of(server.process.pid)))
    return figures


def main() -> None:
    trees = [Path(arg).resolve() for arg in sys.argv[1:]] or [ROOT]
    print(
        f"new environments per second: {CALLS} simultaneous first calls per burst, each held "
        f"{HOLD_S:g} s, {BURSTS} bursts on one server, {os.cpu_count()} cores"
    )
    rates: dict[Path, list[list[float]]] = {tree: [] for tree in trees}
    cpu: dict[Path, list[float]] = {tree: [] for tree in trees}
    for repeat in range(REPEATS):
        for tree in trees:
            figures = bursts(tree)
            rates[tree].append([burst.per_s for burst in figures])
            cpu[tree].extend(burst.server_cpu_ms for burst in figures)
            cells = "  ".join(
                f"{index * CALLS} alive: {burst.per_s:.0f}/s "
                f"(server {burst.server_cpu_ms:.2f} ms CPU each, {burst.mounts} mounts after)"
                for index, burst in enumerate(figures)
            )
            print(f"{tree} (repeat {repeat + 1}): {cells}")
    for tree, repeats in rates.items():
        medians = [statistics.median(column) for column in zip(*repeats, strict=True)]
        print(
            f"{tree}: median per burst "
            + ", ".join(f"{value:.0f}/s" for value in medians)
            + f"; server CPU per environment {statistics.median(cpu[tree]):.2f} ms (median)"
        )


if __name__ == "__main__":
    main()
