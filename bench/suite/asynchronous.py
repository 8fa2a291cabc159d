"""Asynchronous invocation on Lamina: how fast `InvocationType=Event` requests are accepted
(each event durable before its 202) and how fast the queue then drains.

As in bench/async.py: events are accepted by a server with one dispatcher worker, so the
figure is the front door's; the server is then restarted with `concurrency` workers on the
full queue, and the drain rate is taken while the queue goes from 90% to 10%.
"""

from __future__ import annotations

import importlib
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.server import LaminaServer

from bench.harness import ROLE
from bench.suite.config import SuiteConfig
from bench.suite.handlers import FunctionSpec
from bench.suite.targets.lamina import LaminaTarget, package

# `async` is a keyword: bench/async.py can only be imported by name.
async_bench: Any = importlib.import_module("bench.async")
CONCURRENCY = 8


def accept_and_drain(target: LaminaTarget, runtime: str, events: int) -> tuple[float, float]:
    function = FunctionSpec(f"async-{runtime}", runtime, "noop")
    path = f"/2015-03-31/functions/{function.name}/invocations"
    with tempfile.TemporaryDirectory(prefix="lamina-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        server = LaminaServer(data_dir, env={**target.env, "LAMINA_ASYNC_WORKERS": "1"}).start()
        try:
            client = server.client()
            client.create_function(
                FunctionName=function.name,
                Runtime=function.aws_runtime,
                Role=ROLE,
                Handler=function.handler,
                Code={"ZipFile": package(function)},
            )
            client.close()
            accepted = async_bench.send_events(server.port, path, CONCURRENCY, events)
        finally:
            server.stop()  # a clean stop hands every queued or running event back
        workers = {"LAMINA_ASYNC_WORKERS": str(CONCURRENCY)}
        draining = LaminaServer(data_dir, env={**target.env, **workers})
        drain, left, server = async_bench.drain_rate(data_dir, function.name, draining.start)
        server.stop()
    if accepted["errors"] or left:
        raise AssertionError(f"errors {accepted['errors']}, {left} events not drained")
    return accepted["accepted"] / accepted["seconds"], drain


def run_async(
    target: LaminaTarget, config: SuiteConfig, log: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for runtime in config.runtimes:
        log(f"async: {target.name} {runtime}, {config.async_repeats} x {config.async_events}")
        try:
            runs = [
                accept_and_drain(target, runtime, config.async_events)
                for _ in range(config.async_repeats)
            ]
        except Exception as error:  # reported, and the rest of the suite still runs
            results[runtime] = {"failed": f"failed: {type(error).__name__}: {error}"[:300]}
            continue
        accept, drain = [run[0] for run in runs], [run[1] for run in runs]
        results[runtime] = {
            "concurrency": CONCURRENCY,
            "events": config.async_events,
            "accept_per_s": statistics.median(accept),
            "accept_runs": accept,
            "drain_per_s": statistics.median(drain),
            "drain_runs": drain,
        }
    return results
