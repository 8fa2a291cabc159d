"""Rotated rounds: every target, started fresh, once per round, in a shifted order.

On a shared 2-core machine absolute figures drift from minute to minute; running targets
A, B, C, then B, C, A, ... spreads that drift over all of them, and ratios are taken between
targets of the same round.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from bench.suite.config import SuiteConfig
from bench.suite.targets.base import Target
from bench.suite.workloads import Figures, functions_for, run_workloads, wait_until_quiet

# One round: target name -> runtime -> figures ("error" -> message if it did not start).
RoundResult = dict[str, dict[str, Figures]]


def rotated(targets: Sequence[Target], round_index: int) -> list[Target]:
    shift = round_index % len(targets)
    return [*targets[shift:], *targets[:shift]]


def run_target(
    target: Target, config: SuiteConfig, log: Callable[[str], None]
) -> dict[str, Figures]:
    runtimes = [runtime for runtime in config.runtimes if runtime in target.runtimes]
    by_runtime = {runtime: functions_for(runtime, config) for runtime in runtimes}
    results: dict[str, Figures] = {}
    started = time.monotonic()
    try:
        with target.session([f for functions in by_runtime.values() for f in functions]) as session:
            log(f"  started and deployed in {time.monotonic() - started:.1f} s")
            for runtime, functions in by_runtime.items():
                log(f"  {runtime}:")
                results[runtime] = run_workloads(session, target, runtime, config, log)
                session.retire(function.name for function in functions)
                wait_until_quiet(session)
    except Exception as error:  # a target that breaks is reported, the others still run
        results["error"] = {"failed": f"failed: {type(error).__name__}: {error}"[:500]}
        log(f"  FAILED: {error}")
    return results


def run_rounds(
    targets: Sequence[Target], config: SuiteConfig, log: Callable[[str], None]
) -> list[RoundResult]:
    rounds: list[RoundResult] = []
    for index in range(config.rounds):
        result: RoundResult = {}
        for target in rotated(targets, index):
            log(f"round {index + 1}/{config.rounds}: {target.name}")
            result[target.name] = run_target(target, config, log)
        rounds.append(result)
    return rounds
