"""Provisioned environments age out as their execution-role credentials near expiry: the
reconciler replaces an idle one past its age, and a busy one goes when its call ends. The
pool's clock is moved by hand (fake environments, as in test_provisioned_pool)."""

from __future__ import annotations

import asyncio
from typing import cast

from lamina.invoke.provisioned import ProvisionedPool
from lamina.model.functions import FunctionConfig
from lamina.sandbox.environment import ExecutionEnvironment, State
from tests.unit.test_provisioned_pool import V1, V2, Configs, FakeEnvironment, Levels, weighted

MAX_AGE_S = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def aging_pool(configs: Configs, clock: Clock) -> tuple[ProvisionedPool, list[FakeEnvironment]]:
    started: list[FakeEnvironment] = []

    async def start(config: FunctionConfig, initialization_type: str) -> ExecutionEnvironment:
        started.append(FakeEnvironment(config, initialization_type))
        return cast(ExecutionEnvironment, started[-1])

    stamp = iter(range(1_000_000))
    pool = ProvisionedPool(
        configs, start, lambda: next(stamp), Levels(), max_age_s=MAX_AGE_S, clock=clock
    )
    return pool, started


def state(environment: ExecutionEnvironment) -> State:
    return environment.state


def test_an_idle_environment_past_its_age_is_replaced() -> None:
    configs, clock = Configs(weighted(2, 0.5)), Clock()
    pool, started = aging_pool(configs, clock)
    asyncio.run(pool.reconcile())
    first = list(started)
    clock.now += MAX_AGE_S - 1
    asyncio.run(pool.reconcile())
    assert started == first  # not yet
    clock.now += 1
    asyncio.run(pool.reconcile())
    assert all(environment.state is State.DEAD for environment in first)
    assert len(started) == 4
    assert pool.held("fn") == 2
    fresh = pool.take("fn", "live", V1)
    assert fresh is not None and cast(FakeEnvironment, fresh) not in first


def test_a_busy_environment_past_its_age_goes_when_released() -> None:
    configs, clock = Configs(weighted(2, 0.5)), Clock()
    pool, started = aging_pool(configs, clock)
    asyncio.run(pool.reconcile())
    busy = pool.take("fn", "live", V2)
    assert busy is not None
    clock.now += MAX_AGE_S
    asyncio.run(pool.reconcile())
    # Not destroyed while its call runs; the idle one was replaced.
    assert state(busy) is State.IDLE
    pool.release(busy)
    assert state(busy) is State.DEAD
    asyncio.run(pool.reconcile())
    replacement = pool.take("fn", "live", V2)
    assert replacement is not None and replacement is not busy
    assert pool.held("fn") == 2
    assert len(started) == 4  # two, then a replacement for each
