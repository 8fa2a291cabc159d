"""Provisioned concurrency: environments initialised ahead of traffic for a version or alias.

The control plane stores each config as IN_PROGRESS. A reconciler compares the stored configs
(desired) with the environments it holds (actual) four times a second. It starts what is
missing, a few at a time, with AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency, then
reports READY with Allocated = Available = Requested, or FAILED with the reason the
initialisation failed (a failed config is retried only after a new Put). It tears down what is
no longer wanted: a deleted config, a smaller request, an alias that now points at another
version. A restarted server finds the stored configs and provisions them again.

Invocations of the configured qualifier take these environments first; traffic above them
spills over to on-demand environments. They live outside the on-demand pool, so they are never
reaped for being idle, and one that dies (timeout, crash) is replaced on the next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import orjson

from lamina.control.concurrency import ProvisionedConcurrency, ProvisionedTarget
from lamina.invoke.events import LevelObserver, NoLevels
from lamina.model.functions import FunctionConfig
from lamina.sandbox.environment import ExecutionEnvironment, State
from lamina.store.stamped import StampedCache

log = logging.getLogger("lamina.invoke")

INITIALIZATION_TYPE = "provisioned-concurrency"
READY = "READY"
FAILED = "FAILED"

# (function name, qualifier as configured: a version number or an alias name)
Target = tuple[str, str]
StartEnvironment = Callable[[FunctionConfig, str], Awaitable[ExecutionEnvironment]]


class ProvisionedConfigs(Protocol):
    """Where the configs live and where their status is reported (the control plane)."""

    def provisioned_targets(self) -> list[ProvisionedTarget]: ...

    def provisioned_config(self, name: str, qualifier: str) -> ProvisionedConcurrency | None: ...

    def record_provisioned(
        self,
        name: str,
        qualifier: str,
        token: tuple[str, int],
        status: str,
        allocated: int,
        reason: str | None = None,
    ) -> bool: ...


class Allocation:
    """The environments held for one target, all of one version."""

    def __init__(self, key: Target, version: FunctionConfig) -> None:
        self.key = key
        self.version = version.version
        self.revision = version.revision_id
        self.size = 0
        self.idle: list[ExecutionEnvironment] = []
        self.busy: set[ExecutionEnvironment] = set()
        self.retired = False

    @property
    def held(self) -> int:
        return len(self.idle) + len(self.busy)


class ProvisionedPool:
    """Keeps each provisioned config's environments initialised and hands them out."""

    def __init__(
        self,
        configs: ProvisionedConfigs,
        start: StartEnvironment,
        change_stamp: Callable[[], int],
        levels: LevelObserver | None = None,
        interval_s: float = 0.25,
        batch: int = 4,
    ) -> None:
        self._configs = configs
        self._start = start
        self._levels: LevelObserver = levels or NoLevels()
        self._interval_s = interval_s
        # Environments started at once: a large request must not stall the host.
        self._batch = batch
        self._allocations: dict[Target, Allocation] = {}
        self._owners: dict[ExecutionEnvironment, Allocation] = {}
        # The stored configs, read again (in a worker thread) only after the store changed.
        self._targets = StampedCache(change_stamp, configs.provisioned_targets)
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------- invoke path

    def take(
        self, function: str, qualifier: str | None, config: FunctionConfig
    ) -> ExecutionEnvironment | None:
        """An idle provisioned environment for this qualifier and version, if there is one."""
        if qualifier is None:
            return None
        allocation = self._allocations.get((function, qualifier))
        if allocation is None or allocation.revision != config.revision_id:
            return None
        while allocation.idle:
            environment = allocation.idle.pop()
            if environment.state is State.IDLE:
                allocation.busy.add(environment)
                self._publish(allocation)
                return environment
            self._drop(environment)
        return None

    def release(self, environment: ExecutionEnvironment) -> None:
        allocation = self._owners.get(environment)
        if allocation is None:
            environment.destroy()
            return
        allocation.busy.discard(environment)
        if (
            environment.state is State.IDLE
            and not allocation.retired
            and allocation.held < allocation.size
        ):
            allocation.idle.append(environment)
            self._publish(allocation)
        else:
            self._drop(environment)

    # ------------------------------------------------------------- reconciling

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for target in list(self._allocations):
            self._retire(target)
        for environment in list(self._owners):
            self._drop(environment)

    async def _run(self) -> None:
        while True:
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("provisioned concurrency: reconciling failed; retrying")
            await asyncio.sleep(self._interval_s)

    async def reconcile(self) -> None:
        """One pass: bring the environments held in line with the stored configs."""
        targets = await self._targets.get_in_thread()
        wanted = {
            (target.function, target.qualifier): target
            for target in targets
            if target.config.status != FAILED
        }
        for key, allocation in list(self._allocations.items()):
            target = wanted.get(key)
            if target is None or target.version.revision_id != allocation.revision:
                self._retire(key)
        for key, target in wanted.items():
            await self._converge(key, target)

    async def _converge(self, key: Target, target: ProvisionedTarget) -> None:
        allocation = self._allocations.get(key)
        if allocation is None:
            allocation = self._allocations[key] = Allocation(key, target.version)
        allocation.size = target.config.requested
        while allocation.idle and allocation.held > allocation.size:
            self._drop(allocation.idle.pop())
        while allocation.held < allocation.size:
            count = min(self._batch, allocation.size - allocation.held)
            failure = await self._grow(allocation, target.version, count)
            self._publish(allocation)
            if allocation.retired:
                return
            if failure is not None:
                log.warning("provisioned concurrency for %s:%s failed: %s", *key, failure)
                self._retire(key)
                await self._record(target, FAILED, 0, failure)
                return
            current = await asyncio.to_thread(self._configs.provisioned_config, *key)
            if current is None or current.token != target.config.token:
                return  # replaced or deleted meanwhile: the next pass takes it from here
        if target.config.status != READY or target.config.allocated != allocation.size:
            await self._record(target, READY, allocation.size)

    async def _grow(
        self, allocation: Allocation, version: FunctionConfig, count: int
    ) -> str | None:
        """Start `count` environments; the first failure's description, if any failed."""
        results = await asyncio.gather(
            *(self._start(version, INITIALIZATION_TYPE) for _ in range(count)),
            return_exceptions=True,
        )
        failure: str | None = None
        for result in results:
            if isinstance(result, Exception):
                failure = failure or f"{type(result).__name__}: {result}"
            elif isinstance(result, BaseException):
                raise result
            elif result.init_error is not None:
                failure = failure or _init_failure(result.init_error)
                result.destroy()
            elif allocation.retired:
                result.destroy()
            else:
                allocation.idle.append(result)
                self._owners[result] = allocation
        return failure

    async def _record(
        self, target: ProvisionedTarget, status: str, allocated: int, reason: str | None = None
    ) -> None:
        await asyncio.to_thread(
            self._configs.record_provisioned,
            target.function,
            target.qualifier,
            target.config.token,
            status,
            allocated,
            reason,
        )

    def _retire(self, key: Target) -> None:
        allocation = self._allocations.pop(key, None)
        if allocation is None:
            return
        allocation.retired = True
        while allocation.idle:
            self._drop(allocation.idle.pop())
        self._publish(allocation)
        # Busy environments finish their invocation and are destroyed on release.

    def _drop(self, environment: ExecutionEnvironment) -> None:
        allocation = self._owners.pop(environment, None)
        if allocation is not None:
            allocation.busy.discard(environment)
            self._publish(allocation)
        environment.destroy()

    def _publish(self, allocation: Allocation) -> None:
        """Tell the level observer what the target holds now. A retired allocation holds
        nothing that counts (its busy environments are destroyed on release), and once a
        newer allocation serves the target, only that one speaks for it."""
        function, qualifier = allocation.key
        current = self._allocations.get(allocation.key)
        if current is None:
            self._levels.provisioned_changed(function, qualifier, 0, 0)
        elif current is allocation:
            self._levels.provisioned_changed(
                function, qualifier, len(allocation.busy), allocation.held
            )


def _init_failure(payload: bytes) -> str:
    with contextlib.suppress(orjson.JSONDecodeError, TypeError, AttributeError):
        error = orjson.loads(payload)
        return (
            "FUNCTION_ERROR_INIT_FAILURE: "
            f"{error.get('errorType', 'Unknown')}: {error.get('errorMessage', '')}"
        ).rstrip(": ")
    return "FUNCTION_ERROR_INIT_FAILURE"
