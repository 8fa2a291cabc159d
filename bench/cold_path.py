"""The cold path of the namespace backend: what a move into a cgroup costs, cold starts and
idle memory, for this tree or for two trees side by side.

1. Moving a process into a new environment group (what every cold start does; with every
   hierarchy the host has, as the namespace backend does), 100 ms apart so that each
   move is on its own, as cold starts usually are: with the kernel's defaults each waits for
   an RCU grace period; with cgroup2 `favordynmods` (`lamina.sandbox.cgroup_moves`) it does
   not. Printed with the flag as the host has it now.
2. Cold starts (a new function's first call, timed at the client), on a server per source
   tree, alternating between them and 0.3 s apart (a template's ready children and Node's
   runtimes started ahead are replaced in that time, so neither server's background work
   falls on the other's measurement): Python, then Node where the host has it.
3. Idle environments: what the server's whole process tree grows by (PSS) when 24 more
   Python environments sit idle.

Run: `.venv/bin/python -m bench.cold_path [TREE [TREE]]` as root, where a TREE is a checkout
of Lamina (default: this one), e.g. a `git worktree` of an older commit to compare with.
BENCH_QUICK=1 takes fewer samples. Prints figures; asserts nothing.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ROLE, KeepAlive, fresh_server, percentile
from bench.network import ColdRuntime, cold_start, package
from bench.suite import proctree
from lamina.runtimes.registry import RuntimeRegistry
from lamina.sandbox import cgroup_moves
from lamina.sandbox.cgroups import Limits, open_manager

QUICK = bool(os.environ.get("BENCH_QUICK"))
COLD_STARTS = 10 if QUICK else 40
IDLE = 8 if QUICK else 24
MOVES = 5 if QUICK else 15
NOOP = "def handler(event, context):\n    return {}\n"
NODE_NOOP = "exports.handler = async () => ({});\n"
SLEEP = "import time\ndef handler(event, context):\n    time.sleep(event.get('seconds', 0))\n"
ROOT = Path(__file__).resolve().parent.parent


def cgroup_moves_ms() -> list[float]:
    """Milliseconds per move of a fresh child into a fresh environment group, made by
    Lamina's own cgroup manager (v1 or v2, whichever this host has)."""
    manager, why = open_manager(f"lamina-bench-{os.getpid()}", fast_moves=False)
    if manager is None:
        raise SystemExit(f"no cgroups here: {why}")
    taken = []
    try:
        for index in range(MOVES):
            group = manager.create(f"move-{index}", Limits(128 * 1024 * 1024, 128))
            child = os.fork()
            if child == 0:
                time.sleep(5)
                os._exit(0)
            started = time.perf_counter()
            for procs in group.procs_files:
                Path(procs).write_text(str(child))
            taken.append((time.perf_counter() - started) * 1000)
            os.kill(child, 9)
            os.waitpid(child, 0)
            group.remove()
            time.sleep(0.1)
    finally:
        manager.close()
    return taken


def paired_cold_starts(trees: list[Path], runtime: ColdRuntime) -> dict[Path, list[float]]:
    samples: dict[Path, list[float]] = {tree: [] for tree in trees}
    with contextlib.ExitStack() as stack:
        servers = {}
        for tree in trees:
            env = {"LAMINA_ISOLATION": "namespace", "PYTHONPATH": str(tree / "src")}
            server = stack.enter_context(fresh_server(env=env))
            servers[tree] = (server, server.client())
        for index in range(COLD_STARTS + 1):
            order = trees if index % 2 else list(reversed(trees))
            for tree in order:
                elapsed = cold_start(*servers[tree], f"cold-{index}", runtime)
                # The first is a warm-up: the template starts, Node's kind is first seen.
                if index:
                    samples[tree].append(elapsed)
                time.sleep(0.3)
    return samples


def idle_mib(tree: Path) -> float:
    """Growth of the server's whole tree (PSS) per idle environment."""
    env = {"LAMINA_ISOLATION": "namespace", "PYTHONPATH": str(tree / "src")}
    with fresh_server(env=env) as server:
        server.client().create_function(
            FunctionName="idle",
            Runtime="python3.12",
            Role=ROLE,
            Handler="index.handler",
            Code={"ZipFile": package({"index.py": SLEEP})},
            MemorySize=128,
        )
        path = "/2015-03-31/functions/idle/invocations"
        KeepAlive(server.port).request("POST", path, b"{}")
        time.sleep(1.0)
        assert server.process is not None
        root = server.process.pid
        before = proctree.pss_mib(list(proctree.tree(root)))

        def call(_: int) -> int:
            return KeepAlive(server.port).request("POST", path, b'{"seconds": 0.5}')[0]

        with ThreadPoolExecutor(IDLE) as pool:
            statuses = list(pool.map(call, range(IDLE)))
        assert statuses.count(200) == IDLE, statuses
        time.sleep(1.0)
        return (proctree.pss_mib(list(proctree.tree(root))) - before) / IDLE


def main() -> None:
    trees = [Path(arg).resolve() for arg in sys.argv[1:]] or [ROOT]
    flag = cgroup_moves.FLAG in (
        cgroup_moves.cgroup2_options(Path("/proc/self/mountinfo").read_text()) or set()
    )
    moves = cgroup_moves_ms()
    print(
        f"a move into a new environment group, {MOVES} moves 100 ms apart (cgroup2 favordynmods "
        f"{'set' if flag else 'not set'}): p50 {statistics.median(moves):.2f} ms, "
        f"max {max(moves):.2f} ms"
    )
    runtimes: list[ColdRuntime] = [
        ("python", "python3.12", "index.handler", package({"index.py": NOOP}))
    ]
    node = RuntimeRegistry().interpreter("nodejs20.x")
    if node is not None:
        runtimes.append(("node", "nodejs20.x", "index.handler", package({"index.js": NODE_NOOP})))
    for runtime in runtimes:
        for tree, taken in paired_cold_starts(trees, runtime).items():
            print(
                f"{tree}: {runtime[0]} cold start p10 {percentile(taken, 0.1):.2f} ms, "
                f"p50 {statistics.median(taken):.2f} ms, p90 {percentile(taken, 0.9):.2f} ms "
                f"(n={len(taken)})"
            )
    for tree in trees:
        print(f"{tree}: {idle_mib(tree):.2f} MiB PSS per idle Python environment")


if __name__ == "__main__":
    main()
