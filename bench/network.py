"""Network namespaces per environment: what they cost a cold start, and how fast the pool fills.

1. Cold starts (a new function's first invocation, timed at the client) on two fresh servers
   with the namespace backend, network isolation on and off, alternating between them so
   that the machine's load falls on both alike; Python (forked from a template) and Node
   (a fresh process); then bursts of concurrent cold starts, larger than the pool.
2. The pool: how many prepared namespaces per second one filler thread makes, and what
   taking one and opening its Runtime API socket costs a cold start.

Run: `.venv/bin/python -m bench.network` (root; BENCH_QUICK=1 for fewer samples).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import statistics
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.support.server import LaminaServer

from bench.harness import ROLE, KeepAlive, fresh_server, percentile, report
from lamina.runtimes.registry import RuntimeRegistry
from lamina.sandbox.namespace import UidPool, _lock_dir
from lamina.sandbox.network import NetworkIsolation, NetworkOptions

QUICK = bool(os.environ.get("BENCH_QUICK"))
SAMPLES = 10 if QUICK else 60
# Half again the default pool: a third of the burst makes its namespace on the spot.
BURST = NetworkOptions().pool_size * 3 // 2
BURST_REPEATS = 2 if QUICK else 4
POOL_SAMPLE = 32 if QUICK else 128

PYTHON = "def handler(event, context):\n    return {}\n"
NODE = "exports.handler = async () => ({});\n"


def package(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def runtimes() -> list[tuple[str, str, str, dict[str, str]]]:
    """(label, runtime, handler, files) of each runtime measured."""
    found = [("python", "python3.12", "app.handler", {"app.py": PYTHON})]
    registry = RuntimeRegistry()
    node = next((name for name in ("nodejs20.x", "nodejs22.x") if registry.interpreter(name)), None)
    if node:
        found.append(("node", node, "index.handler", {"index.js": NODE}))
    return found


# (label, runtime, handler, zipped code) of a function to cold-start.
ColdRuntime = tuple[str, str, str, bytes]


def cold_start(server: LaminaServer, client: Any, name: str, runtime: ColdRuntime) -> float:
    """A new function's first invocation, in ms at the client."""
    _, name_runtime, handler, code = runtime
    client.create_function(
        FunctionName=name,
        Runtime=name_runtime,
        Role=ROLE,
        Handler=handler,
        Code={"ZipFile": code},
        MemorySize=128,
    )
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    connection = KeepAlive(server.port)
    started = time.perf_counter()
    status, body = connection.request("POST", f"/2015-03-31/functions/{name}/invocations", b"{}")
    elapsed = (time.perf_counter() - started) * 1000
    connection.close()
    assert status == 200 and b"errorType" not in body, body[:200]
    return elapsed


def paired_cold_starts() -> None:
    """Two servers at once, network namespaces on and off, cold starts alternating between
    them (which goes first alternates too): both see the machine's load at the same time."""
    servers = {}
    with contextlib.ExitStack() as stack:
        for network in ("on", "off"):
            env = {"LAMINA_ISOLATION": "namespace", "LAMINA_NETWORK_ISOLATION": network}
            server = stack.enter_context(fresh_server(env=env))
            servers[network] = (server, server.client())
        for label, name, handler, files in runtimes():
            runtime = (label, name, handler, package(files))
            samples: dict[str, list[float]] = {"on": [], "off": []}
            differences = []
            for index in range(SAMPLES + 1):
                order = ("on", "off") if index % 2 else ("off", "on")
                taken = {
                    network: cold_start(*servers[network], f"cold-{label}-{index}", runtime)
                    for network in order
                }
                # The first is a warm-up: the template and caches, as on a running server.
                if index:
                    for network, elapsed in taken.items():
                        samples[network].append(elapsed)
                    differences.append(taken["on"] - taken["off"])
            for network in ("off", "on"):
                report(f"{label} cold start, network namespace {network}", samples[network])
            print(
                f"{label}: cold start with a network namespace, median of paired "
                f"differences {statistics.median(differences):+.2f} ms; p50 "
                f"{percentile(samples['on'], 0.5) - percentile(samples['off'], 0.5):+.2f} ms"
            )
        burst(servers)
        for _, client in servers.values():
            client.close()


def burst(servers: dict[str, tuple[LaminaServer, Any]]) -> None:
    """BURST Python functions' first invocations at once, more than the pool holds."""
    label, runtime, handler, files = runtimes()[0]
    code = package(files)
    for repeat in range(BURST_REPEATS):
        for network in ("on", "off") if repeat % 2 else ("off", "on"):
            server, client = servers[network]
            names = [f"burst-{repeat}-{index}" for index in range(BURST)]
            for name in names:
                client.create_function(
                    FunctionName=name,
                    Runtime=runtime,
                    Role=ROLE,
                    Handler=handler,
                    Code={"ZipFile": code},
                    MemorySize=128,
                )
                client.get_waiter("function_active_v2").wait(FunctionName=name)

            def first_call(name: str, port: int = server.port) -> float:
                connection = KeepAlive(port)
                started = time.perf_counter()
                path = f"/2015-03-31/functions/{name}/invocations"
                status, body = connection.request("POST", path, b"{}")
                connection.close()
                assert status == 200 and b"errorType" not in body, body[:200]
                return (time.perf_counter() - started) * 1000

            with ThreadPoolExecutor(BURST) as threads:
                taken = list(threads.map(first_call, names))
            report(f"{label} burst of {BURST} cold starts, netns {network}", taken)
            for name in names:  # their environments end, as bursts' do when idle
                client.delete_function(FunctionName=name)
            time.sleep(1)  # the pool refills between bursts, as between real ones


async def pool_rates() -> None:
    uids = UidPool(_lock_dir())
    isolation = NetworkIsolation.open(uids.block, NetworkOptions(pool_size=POOL_SAMPLE))
    try:
        started = time.perf_counter()
        while isolation.pooled() < POOL_SAMPLE:
            await asyncio.sleep(0.001)
        filled_s = time.perf_counter() - started
        print(
            f"pool refill: {POOL_SAMPLE} namespaces in {filled_s * 1000:.0f} ms = "
            f"{POOL_SAMPLE / filled_s:.0f} namespaces/s (one filler thread)"
        )
        taking: list[float] = []
        for _ in range(POOL_SAMPLE // 2):
            began = time.perf_counter()
            slot = await isolation.take(None)
            listener = isolation.listen(slot)
            taking.append((time.perf_counter() - began) * 1e6)
            listener.close()
        print(
            f"take a slot + Runtime API socket in its namespace: p50 "
            f"{percentile(taking, 0.5):.0f} us, p99 {percentile(taking, 0.99):.0f} us"
        )
    finally:
        isolation.close()
    # The slow path: a pool that ran dry makes the namespace during the cold start.
    dry = NetworkIsolation.open(uids.block, NetworkOptions(pool_size=0, named_pool_size=0))
    try:
        making: list[float] = []
        for _ in range(10 if QUICK else 30):
            began = time.perf_counter()
            await dry.take(None)
            making.append((time.perf_counter() - began) * 1000)
        print(
            f"empty pool, namespace made during the cold start: p50 "
            f"{percentile(making, 0.5):.2f} ms, p99 {percentile(making, 0.99):.2f} ms"
        )
    finally:
        dry.close()
        uids.close()


def main() -> None:
    print(f"Lamina network namespace benchmarks, {os.cpu_count()} cores")
    asyncio.run(pool_rates())
    paired_cold_starts()


if __name__ == "__main__":
    main()
