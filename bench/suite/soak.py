"""The soak: a steady load at concurrency 8 for a minute, as many invocations as about ten
minutes of a tenth of that traffic; latency percentiles and the server's memory over time.

Memory should stay flat: a server that leaks per invocation shows it here first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.suite import proctree
from bench.suite.config import SuiteConfig
from bench.suite.handlers import FunctionSpec
from bench.suite.stats import percentile
from bench.suite.targets.base import Target

WINDOWS = 12
SAMPLE_EVERY_S = 1.0


def soak_runtime(target: Target, runtime: str, config: SuiteConfig) -> dict[str, Any]:
    name = f"soak-{runtime}"
    with target.session([FunctionSpec(name, runtime, "noop")]) as session:
        root = session.root_pid
        assert root is not None, f"{target.name} has no server to soak"
        session.load(name, config.soak_concurrency, config.soak_concurrency * 20)  # warm
        memory: list[dict[str, float]] = []
        started = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(
                session.load,
                name,
                config.soak_concurrency,
                0,
                duration=config.soak_seconds,
            )
            while not running.done():
                memory.append(
                    {
                        "t": time.monotonic() - started,
                        "server_rss_mib": proctree.rss_mib(root),
                        "tree_pss_mib": proctree.pss_mib(proctree.tree(root)),
                    }
                )
                time.sleep(SAMPLE_EVERY_S)
            result = running.result()
    width = config.soak_seconds / WINDOWS
    windows = []
    for index in range(WINDOWS):
        latencies = [ms for t, ms in result.timeline if index * width <= t < (index + 1) * width]
        if latencies:
            windows.append(
                {
                    "t": (index + 0.5) * width,
                    "rate": len(latencies) / width,
                    "p50": percentile(latencies, 0.5),
                    "p99": percentile(latencies, 0.99),
                    "p999": percentile(latencies, 0.999),
                }
            )
    return {
        "invocations": result.requests,
        "errors": result.error_count,
        "windows": windows,
        "memory": memory,
    }


def run_soak(
    target: Target, config: SuiteConfig, log: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for runtime in config.runtimes:
        log(f"soak: {target.name} {runtime}, {config.soak_seconds:.0f} s")
        try:
            results[runtime] = soak_runtime(target, runtime, config)
        except Exception as error:  # reported, and the rest of the suite still runs
            results[runtime] = {"failed": f"failed: {type(error).__name__}: {error}"[:300]}
    return results
