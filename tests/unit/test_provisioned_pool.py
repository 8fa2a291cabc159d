"""The provisioned pool on fake environments: a weighted alias's environments split by version,
handed out by version, counted per function, and reported to the level observer per target."""

from __future__ import annotations

import asyncio
from typing import cast

from lamina.control.concurrency import ProvisionedConcurrency, ProvisionedTarget
from lamina.invoke.provisioned import ProvisionedPool
from lamina.model.functions import FunctionConfig
from lamina.sandbox.environment import ExecutionEnvironment, State


class FakeEnvironment:
    def __init__(self, config: FunctionConfig, initialization_type: str) -> None:
        self.version = config.version
        self.initialization_type = initialization_type
        self.state = State.IDLE
        self.init_error: bytes | None = None

    def destroy(self) -> None:
        self.state = State.DEAD


class Configs:
    """The control plane's side: the stored targets, and what the engine reported."""

    def __init__(self, *targets: ProvisionedTarget) -> None:
        self.targets = list(targets)
        self.recorded: list[tuple[str, str, str, int]] = []

    def provisioned_targets(self) -> list[ProvisionedTarget]:
        return self.targets

    def provisioned_config(self, name: str, qualifier: str) -> ProvisionedConcurrency | None:
        for target in self.targets:
            if (target.function, target.qualifier) == (name, qualifier):
                return target.config
        return None

    def record_provisioned(
        self,
        name: str,
        qualifier: str,
        token: tuple[str, int],
        status: str,
        allocated: int,
        reason: str | None = None,
    ) -> bool:
        self.recorded.append((name, qualifier, status, allocated))
        return True


class Levels:
    def __init__(self) -> None:
        self.provisioned: dict[tuple[str, str], tuple[int, int]] = {}

    def admitted(self, function_name: str, unreserved: bool) -> None: ...

    def released(self, function_name: str, unreserved: bool) -> None: ...

    def environment_started(self, function_name: str) -> None: ...

    def environment_stopped(self, function_name: str) -> None: ...

    def provisioned_changed(self, function_name: str, qualifier: str, busy: int, held: int) -> None:
        self.provisioned[(function_name, qualifier)] = (busy, held)


def version(number: str) -> FunctionConfig:
    return FunctionConfig("fn", "role", "python3.12", "app.h", "sha", 1, "blob", 1, version=number)


V1, V2 = version("1"), version("2")


def weighted(requested: int, weight: float) -> ProvisionedTarget:
    """Alias `live` on version 2, routing `weight` of its traffic to version 1."""
    return ProvisionedTarget("fn", "live", ProvisionedConcurrency(requested), V2, V1, weight)


def pool_for(configs: Configs, levels: Levels) -> ProvisionedPool:
    async def start(config: FunctionConfig, initialization_type: str) -> ExecutionEnvironment:
        return cast(ExecutionEnvironment, FakeEnvironment(config, initialization_type))

    stamp = iter(range(1_000_000))
    return ProvisionedPool(configs, start, lambda: next(stamp), levels)


def test_a_weighted_alias_holds_environments_of_both_versions() -> None:
    configs, levels = Configs(weighted(4, 0.25)), Levels()
    pool = pool_for(configs, levels)
    asyncio.run(pool.reconcile())
    assert configs.recorded == [("fn", "live", "READY", 4)]
    assert pool.held("fn") == 4
    assert levels.provisioned[("fn", "live")] == (0, 4)
    # One environment of version 1, three of version 2, each handed out for its version only.
    taken_v1 = pool.take("fn", "live", V1)
    assert taken_v1 is not None
    assert cast(FakeEnvironment, taken_v1).version == "1"
    assert cast(FakeEnvironment, taken_v1).initialization_type == "provisioned-concurrency"
    assert pool.take("fn", "live", V1) is None
    taken_v2 = [pool.take("fn", "live", V2) for _ in range(3)]
    assert {cast(FakeEnvironment, env).version for env in taken_v2 if env is not None} == {"2"}
    assert pool.take("fn", "live", V2) is None
    # The target's level counts both versions; busy environments still count as held.
    assert levels.provisioned[("fn", "live")] == (4, 4)
    assert pool.held("fn") == 4
    pool.release(taken_v1)
    assert levels.provisioned[("fn", "live")] == (3, 4)


def test_an_environment_that_died_while_idle_is_replaced() -> None:
    configs, levels = Configs(weighted(2, 0.5)), Levels()
    pool = pool_for(configs, levels)
    asyncio.run(pool.reconcile())
    taken = pool.take("fn", "live", V1)
    assert taken is not None
    pool.release(taken)
    taken.destroy()  # its runtime exited while it sat idle
    asyncio.run(pool.reconcile())
    fresh = pool.take("fn", "live", V1)
    assert fresh is not None and fresh is not taken
    assert cast(FakeEnvironment, fresh).state is State.IDLE
    assert pool.held("fn") == 2


def test_the_environments_belong_to_their_version() -> None:
    configs, levels = Configs(weighted(2, 0.5)), Levels()
    pool = pool_for(configs, levels)
    asyncio.run(pool.reconcile())
    # A call of version 1 by its number, or through another alias, finds them too.
    assert pool.take("fn", "1", V1) is not None
    assert pool.take("fn", None, V2) is not None
    # A configuration of another revision (an alias moved, a version replaced) does not.
    assert pool.take("fn", "live", version("2")) is None


def test_dropping_the_routing_retires_the_routed_versions_environments() -> None:
    configs, levels = Configs(weighted(2, 0.5)), Levels()
    pool = pool_for(configs, levels)
    asyncio.run(pool.reconcile())
    routed = pool.take("fn", "live", V1)
    assert routed is not None
    configs.targets = [ProvisionedTarget("fn", "live", configs.targets[0].config, V2)]
    asyncio.run(pool.reconcile())
    # Version 2 now has both; version 1's busy environment finishes, then goes.
    assert pool.take("fn", "live", V1) is None
    assert levels.provisioned[("fn", "live")] == (0, 2)
    pool.release(routed)
    assert cast(FakeEnvironment, routed).state is State.DEAD
    assert pool.held("fn") == 2
    # Deleting the config empties the target.
    configs.targets = []
    asyncio.run(pool.reconcile())
    assert levels.provisioned[("fn", "live")] == (0, 0)
    assert pool.held("fn") == 0
