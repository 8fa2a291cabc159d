"""The workloads, run against one target for one runtime in one round.

Every workload returns flat figures ("warm.noop.p50": 0.91, ...). A workload the target
cannot run gives "not supported: <why>" for its figures instead, so nothing silently
disappears from the report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.suite import proctree
from bench.suite.client import handler_ms
from bench.suite.config import SuiteConfig
from bench.suite.handlers import FunctionSpec
from bench.suite.stats import latency_figures, percentile
from bench.suite.targets.base import Capability, Session, Target

Figures = dict[str, float | str]
ECHO_BYTES = 1024 * 1024
FOUR_GIB_IN_MIB = 4096


def functions_for(runtime: str, config: SuiteConfig) -> list[FunctionSpec]:
    """Every function one runtime's workloads invoke, deployed before the round starts."""
    functions = [
        FunctionSpec(f"noop-{runtime}", runtime, "noop"),
        FunctionSpec(f"echo-{runtime}", runtime, "echo"),
        FunctionSpec(f"cpu-{runtime}", runtime, "cpu"),
        FunctionSpec(f"cpu128-{runtime}", runtime, "cpu", memory_mb=128),
        FunctionSpec(f"burst-{runtime}", runtime, "noop"),
        FunctionSpec(f"spawn-{runtime}", runtime, "spawn"),
        FunctionSpec(f"idle-{runtime}", runtime, "sleep"),
        FunctionSpec(f"url-{runtime}", runtime, "noop", url=True),
    ]
    for workload in ("noop", "init200"):
        functions += [
            FunctionSpec(f"cold-{workload}-{runtime}-{index}", runtime, workload)
            for index in range(config.cold_starts)
        ]
    return functions


@dataclass
class Context:
    session: Session
    runtime: str
    config: SuiteConfig

    def cpu_ms_per_call(self, started_cpu: float, calls: int) -> float:
        return (self.session.cpu_seconds() - started_cpu) * 1000 / calls


def cold_starts(ctx: Context) -> Figures:
    figures: Figures = {}
    for workload in ("noop", "init200"):
        started_cpu = ctx.session.cpu_seconds()
        samples = []
        for index in range(ctx.config.cold_starts):
            time.sleep(ctx.config.cold_gap_s)
            name = f"cold-{workload}-{ctx.runtime}-{index}"
            samples.append(ctx.session.call(name, fresh=True)[0])
        figures |= latency_figures(samples, f"cold.{workload}", tail=False)
        figures[f"cpu_ms.cold.{workload}"] = ctx.cpu_ms_per_call(started_cpu, len(samples))
    return figures


def warm_noop(ctx: Context) -> Figures:
    name = f"noop-{ctx.runtime}"
    for _ in range(20):
        ctx.session.call(name)
    started_cpu = ctx.session.cpu_seconds()
    latencies, overheads = [], []
    for _ in range(ctx.config.warm_calls):
        elapsed, answer = ctx.session.call(name)
        latencies.append(elapsed)
        overheads.append(elapsed - handler_ms(answer))
    return {
        **latency_figures(latencies, "warm.noop"),
        **latency_figures(overheads, "overhead.noop"),
        "cpu_ms.noop": ctx.cpu_ms_per_call(started_cpu, len(latencies)),
    }


def echo(ctx: Context) -> Figures:
    name = f"echo-{ctx.runtime}"
    padding = ECHO_BYTES - len(json.dumps({"data": ""}))
    payload = json.dumps({"data": "x" * padding}).encode()
    ctx.session.call(name, payload)
    started_cpu = ctx.session.cpu_seconds()
    latencies = []
    for _ in range(ctx.config.echo_calls):
        elapsed, answer = ctx.session.call(name, payload)
        if len(answer) < ECHO_BYTES - 64:
            raise AssertionError(f"{name} answered {len(answer)} bytes, not the 1 MB sent")
        latencies.append(elapsed)
    return {
        **latency_figures(latencies, "echo"),
        "cpu_ms.echo": ctx.cpu_ms_per_call(started_cpu, len(latencies)),
    }


def _cpu_series(ctx: Context, name: str, calls: int) -> tuple[list[float], list[float]]:
    ctx.session.call(name)
    latencies, overheads = [], []
    for _ in range(calls):
        elapsed, answer = ctx.session.call(name)
        latencies.append(elapsed)
        overheads.append(elapsed - handler_ms(answer))
    return latencies, overheads


def cpu_bound(ctx: Context) -> Figures:
    latencies, overheads = _cpu_series(ctx, f"cpu-{ctx.runtime}", ctx.config.cpu_calls)
    return {
        **latency_figures(latencies, "cpu1769", tail=False),
        "overhead.cpu1769.p50": percentile(overheads, 0.5),
    }


def cpu_throttled(ctx: Context) -> Figures:
    latencies, _ = _cpu_series(ctx, f"cpu128-{ctx.runtime}", ctx.config.throttled_cpu_calls)
    return {**latency_figures(latencies, "cpu128", tail=False)}


def throughput(ctx: Context) -> Figures:
    figures: Figures = {}
    name = f"noop-{ctx.runtime}"
    for concurrency in ctx.config.concurrencies:
        # Scale out first (untimed), with enough calls per environment that its first slow
        # ones (imports, JIT) are over: the figure is steady-state throughput.
        ctx.session.load(name, concurrency, max(concurrency * 5, 100))
        started_cpu = ctx.session.cpu_seconds()
        result = ctx.session.load(name, concurrency, ctx.config.requests_at(concurrency))
        if result.errors:
            raise AssertionError(f"{name} at concurrency {concurrency}: {result.errors}")
        figures[f"throughput.c{concurrency}"] = result.rate
        figures |= latency_figures(result.latencies_ms, f"throughput.c{concurrency}", tail=False)
        figures[f"cpu_ms.c{concurrency}"] = ctx.cpu_ms_per_call(started_cpu, result.requests)
    return figures


def burst(ctx: Context) -> Figures:
    """`burst` simultaneous first calls to a function that has no environment yet."""
    size = ctx.config.burst
    result = ctx.session.load(f"burst-{ctx.runtime}", size, size)
    if result.errors:
        raise AssertionError(f"burst: {result.errors}")
    return {
        **latency_figures(result.latencies_ms, "burst", tail=False),
        "burst.max": max(result.latencies_ms),
        "burst.wall_ms": result.seconds * 1000,
    }


def spawn_rate(ctx: Context) -> Figures:
    """How many new environments a second the target makes: `spawn` simultaneous first calls
    to a function that has none, each keeping its environment busy for a while, so each
    wants one of its own. Counted from the answers: the distinct environments that ran a
    call, and when each first entered its handler (wall clock, the load generator's too),
    up to the last of them. A target slower than the hold may serve a later call in an
    environment freed meanwhile: only environments it made count, at the rate it made them.
    """
    size = ctx.config.spawn
    body = json.dumps({"seconds": ctx.config.spawn_hold_s}).encode()
    result = ctx.session.load(f"spawn-{ctx.runtime}", size, size, body, keep_bodies=True)
    if result.errors:
        raise AssertionError(f"spawn: {result.errors}")
    made, last_s = environments_made(result.bodies, result.started_at)
    return {
        "spawn.per_s": made / last_s,
        "spawn.environments": made,
        "spawn.last_ms": last_s * 1000,
    }


def environments_made(bodies: list[str], started_at: float) -> tuple[int, float]:
    """The distinct environments that answered `spawn` calls sent at `started_at` (epoch
    seconds), and the seconds from then until the last of them first entered its handler."""
    first_call: dict[str, float] = {}
    for text in bodies:
        answer = json.loads(text)
        environment, started = answer["environment"], float(answer["started"])
        first_call[environment] = min(first_call.get(environment, started), started)
    return len(first_call), max(first_call.values()) - started_at


def idle_memory(ctx: Context) -> Figures:
    """Memory that `idle_environments` more warm, idle environments cost.

    Each call sleeps, so that many concurrent calls need that many environments. Counted:
    the new processes' proportional set size plus what the processes already there grew by
    (the server's own growth: where environments are threads, as serverless-offline's Node
    workers, that is all of it; a template's ready children that became environments).
    Processes that shrank count nothing: idle runtimes elsewhere in the tree shrink their
    heaps meanwhile and would make the figure noise.
    """
    root, count = ctx.session.root_pid, ctx.config.idle_environments
    assert root is not None
    before = {pid: proctree.pss_mib([pid]) for pid in proctree.tree(root)}
    result = ctx.session.load(f"idle-{ctx.runtime}", count, count, b'{"seconds": 0.5}')
    if result.errors:
        raise AssertionError(f"idle: {result.errors}")
    time.sleep(1.0)  # let them settle into idleness
    after = {pid: proctree.pss_mib([pid]) for pid in proctree.tree(root)}
    new = set(after) - set(before)
    grown = sum(after[pid] for pid in new) + sum(
        max(0.0, after[pid] - before[pid]) for pid in set(after) & set(before)
    )
    per_environment = grown / count
    return {
        "idle.env_mib": per_environment,
        "idle.fit_in_4gib": FOUR_GIB_IN_MIB // per_environment if per_environment > 0 else 0.0,
        "idle.new_processes": len(new),
    }


def wait_until_quiet(session: Session, timeout: float = 20.0) -> None:
    """Wait for the target to finish background work (environments stopping after a
    retire, a template starting) so it is not billed to the next measurement."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = session.cpu_seconds()
        time.sleep(0.5)
        if session.cpu_seconds() - before < 0.05:  # under 10% of one core
            return


def function_url(ctx: Context) -> Figures:
    """URL and Invoke throughput on the same function at concurrency 8, alternated."""
    name, total = f"url-{ctx.runtime}", ctx.config.url_requests
    ctx.session.load(name, 8, 16)
    ctx.session.url_load(name, 8, 16)
    rates: dict[str, list[float]] = {"url": [], "invoke": []}
    for _ in range(2):
        for kind, result in (
            ("invoke", ctx.session.load(name, 8, total // 2)),
            ("url", ctx.session.url_load(name, 8, total // 2)),
        ):
            # A refused call is answered fast: counted, it would pass for throughput.
            if result.errors:
                raise AssertionError(f"function URL workload, {kind}: {result.errors}")
            rates[kind].append(result.rate)
    url, invoke = sum(rates["url"]) / 2, sum(rates["invoke"]) / 2
    return {"url.throughput": url, "url.invoke_throughput": invoke, "url.vs_invoke": url / invoke}


@dataclass(frozen=True)
class Workload:
    name: str
    run: Callable[[Context], Figures]
    needs: tuple[Capability, ...] = ()


WORKLOADS = (
    Workload("cold", cold_starts),
    Workload("warm", warm_noop, (Capability.WARM,)),
    Workload("echo", echo),
    Workload("cpu", cpu_bound),
    Workload("cpu128", cpu_throttled, (Capability.MEMORY_LIMIT,)),
    Workload("throughput", throughput, (Capability.CONCURRENCY,)),
    Workload("burst", burst, (Capability.CONCURRENCY,)),
    Workload("idle", idle_memory, (Capability.IDLE_ENVIRONMENTS,)),
    Workload("url", function_url, (Capability.FUNCTION_URL, Capability.CONCURRENCY)),
    # Last: the environments it makes stay until this runtime's functions are retired.
    Workload("spawn", spawn_rate, (Capability.CONCURRENCY,)),
)


def run_workloads(
    session: Session, target: Target, runtime: str, config: SuiteConfig, log: Callable[[str], None]
) -> Figures:
    ctx = Context(session, runtime, config)
    session.call(f"noop-{runtime}")  # the server's own warm-up (e.g. a template), untimed
    wait_until_quiet(session)
    figures: Figures = {}
    for workload in WORKLOADS:
        missing = [reason for need in workload.needs if (reason := target.unsupported(need))]
        if missing:
            figures |= {f"{workload.name}.unsupported": f"not supported: {missing[0]}"}
            continue
        started = time.monotonic()
        try:
            figures |= workload.run(ctx)
        except Exception as error:  # one broken workload must not cost the whole run
            figures[f"{workload.name}.failed"] = f"failed: {type(error).__name__}: {error}"[:300]
        log(f"    {workload.name:<11} {time.monotonic() - started:6.1f} s")
    return figures
