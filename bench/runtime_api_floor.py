"""How far the warm path is from the floor, split in two: what the Runtime API itself costs,
and what Lamina does beyond it.

For Python and then Node, three servers serve the suite's warm no-op on the functions'
interpreters:
- the suite's floor (`bench/suite/floor/server.py`): each event is a line on a pipe to a warm
  child that calls the handler;
- the Runtime API floor (`bench/suite/floor/runtime_api_server.py`): each event goes to a
  warm runtime over Lambda's Runtime API, with Lamina's own runtime for the language
  (`lamina/runtimes/python/bootstrap.py`, `lamina/runtimes/node/bootstrap.cjs`) as that
  runtime, and nothing else is done;
- Lamina, as `make run` starts it (namespace isolation, the template), the function at
  1,769 MB (a whole vCPU, so no CPU cap is in the figure).

In alternating blocks, each gets back-to-back calls on one keep-alive connection (the CPU
of its whole process tree per call, runtimes included, and the latency p50), then a load
generator in its own process keeps 8 connections busy (invocations a second, and the tree's
CPU per call at that load). Printed per server: medians over blocks, with their range, and
the ratios to each floor.

Run: `.venv/bin/python -m bench.runtime_api_floor` (BENCH_QUICK=1 for fewer blocks and
calls; BENCH_RUNTIMES=python or node for one language). Prints figures; asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ROLE, fresh_server, loadgen
from bench.network import package
from bench.suite.handlers import AWS_RUNTIMES, FunctionSpec
from bench.suite.peers import interpreter
from bench.suite.proctree import cpu_seconds
from bench.suite.targets.floor import CHILDREN, FLOOR_DIR, floor_server
from bench.warm_path import CALLS, CONCURRENCY, PATH, sequential

BLOCKS = 2 if os.environ.get("BENCH_QUICK") else 8
ROOT = Path(__file__).resolve().parent.parent
RUNTIMES = os.environ.get("BENCH_RUNTIMES", "python,node").split(",")
BOOTSTRAPS = {
    "python": ROOT / "src/lamina/runtimes/python/bootstrap.py",
    "node": ROOT / "src/lamina/runtimes/node/bootstrap.cjs",
}


def concurrent(port: int, pid: int) -> tuple[float, float]:
    """(invocations a second, tree CPU per call in µs) with 8 connections busy."""
    before = cpu_seconds(pid)
    result = loadgen(port, PATH, CONCURRENCY, CALLS * 3)
    assert not result["errors"], result["errors"]
    cpu = (cpu_seconds(pid) - before) / result["requests"] * 1e6
    return result["requests"] / result["seconds"], cpu


def servers(stack: ExitStack, runtime: str) -> dict[str, tuple[int, int]]:
    """The three servers, each serving the no-op as `warm`."""
    spec = FunctionSpec("warm", runtime, "noop")
    language = interpreter(AWS_RUNTIMES[runtime])
    code = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rapi-floor-")))
    (code / spec.filename).write_text(spec.source)
    child = str(FLOOR_DIR / CHILDREN[runtime])
    pipe = {"warm": [language, child, str(code), spec.workload]}
    runtime_api = {
        "warm": {
            "argv": [language, str(BOOTSTRAPS[runtime])],
            "env": {"LAMBDA_TASK_ROOT": str(code), "_HANDLER": spec.handler},
        }
    }
    lamina = stack.enter_context(fresh_server(env={"LAMINA_IDLE_TIMEOUT": "600"}))
    lamina.client().create_function(
        FunctionName="warm",
        Runtime=spec.aws_runtime,
        Role=ROLE,
        Handler=spec.handler,
        MemorySize=spec.memory_mb,
        Code={"ZipFile": package({spec.filename: spec.source})},
    )
    assert lamina.process is not None
    return {
        "floor (pipe)": stack.enter_context(floor_server("server.py", pipe)),
        "floor (Runtime API)": stack.enter_context(
            floor_server("runtime_api_server.py", runtime_api)
        ),
        "lamina": (lamina.port, lamina.process.pid),
    }


def measure(runtime: str) -> None:
    taken: dict[str, dict[str, list[float]]] = {}
    with ExitStack() as stack:
        targets = servers(stack, runtime)
        for port, _ in targets.values():
            # Every warm runtime the concurrent calls need, started before any block.
            loadgen(port, PATH, CONCURRENCY, CALLS)
        names = list(targets)
        for block in range(BLOCKS):
            for name in names[block % len(names) :] + names[: block % len(names)]:
                port, pid = targets[name]
                figures = taken.setdefault(name, {"cpu": [], "p50": [], "rate": [], "cpu8": []})
                cpu, p50 = sequential(port, pid, cpu_seconds)
                rate, cpu8 = concurrent(port, pid)
                figures["cpu"].append(cpu)
                figures["p50"].append(p50)
                figures["rate"].append(rate)
                figures["cpu8"].append(cpu8)
    medians = {
        name: {key: statistics.median(values) for key, values in figures.items()}
        for name, figures in taken.items()
    }
    for name, figures in taken.items():
        print(
            f"{runtime} {name}: tree CPU {medians[name]['cpu']:.0f} µs/call "
            f"({min(figures['cpu']):.0f}-{max(figures['cpu']):.0f}), p50 "
            f"{medians[name]['p50']:.3f} ms; {CONCURRENCY} connections "
            f"{medians[name]['rate']:,.0f}/s ({min(figures['rate']):,.0f}-"
            f"{max(figures['rate']):,.0f}), tree CPU {medians[name]['cpu8']:.0f} µs/call"
        )
    for floor, name in (
        ("floor (pipe)", "floor (Runtime API)"),
        ("floor (pipe)", "lamina"),
        ("floor (Runtime API)", "lamina"),
    ):
        ratio = {key: medians[name][key] / medians[floor][key] for key in medians[name]}
        print(
            f"{runtime} {name} / {floor}: CPU {ratio['cpu']:.2f}, p50 {ratio['p50']:.2f}, "
            f"throughput {ratio['rate']:.2f}, CPU at {CONCURRENCY} {ratio['cpu8']:.2f}"
        )


def main() -> None:
    for runtime in RUNTIMES:
        measure(runtime)
    print(f"{BLOCKS} blocks of {CALLS} sequential and {CALLS * 3} concurrent calls each")


if __name__ == "__main__":
    main()
