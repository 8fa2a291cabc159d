"""Provisioned concurrency: environments initialised ahead of traffic for a version or alias.

The control plane stores each config as IN_PROGRESS. A reconciler compares the stored configs
(desired) with the environments it holds (actual) four times a second. It starts what is
missing, a few at a time, with AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency, then
reports READY with Allocated = Available = Requested, or FAILED with the reason the
initialisation failed (a failed config is retried only after a new Put). It tears down what is
no longer wanted: a deleted config, a smaller request, an alias that now points at another
version. A restarted server finds the stored configs and provisions them again.

A config on an alias that routes to two versions holds environments of both, split by the
routing weight (`ProvisionedTarget.split`); each share is one `Allocation`. Environments belong
to their version: an invocation that runs that version, through the alias or by its number,
takes an idle one first, and traffic above them spills over to on-demand environments. They
live outside the on-demand pool, so they are never reaped for being idle, and one that dies
(timeout, crash) is replaced on the next pass.

In a cluster every worker node runs a pool on the same stored configs, and each holds only
its share (`share`, from `lamina.cluster.placement`): the config's environments are numbered
across the cluster, the primary version's first, and each node takes those placed on it, so
the versions' totals are those of the single-node split. When the live workers change
(`placement_version` moves), every pass after works out the shares again: a dead node's
environments are started by the nodes that inherit them, and a node that lost some drops them.

Status in a cluster follows what AWS shows: IN_PROGRESS until every requested environment is
initialised somewhere, then READY with Allocated = Available = Requested. No node sees the
others' environments, so each node whose share is ready notes it in the store
(`ShareReadiness`, implemented by `lamina.cluster.provisioned_status`), and the note that
completes the set of live workers' shares marks the config READY. A node with no share writes
nothing. A share that fails to initialise marks the config FAILED, as on one node. Once READY,
a config stays READY while a dead node's environments are started again elsewhere: AWS too
keeps a config READY while it replaces environments.

Environments age out as on-demand ones do (`max_age_s`: their execution-role credentials
expire): the reconciler drops an idle one past that age, and the pass replaces it; a busy one
is dropped when its invocation ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from lamina.control.concurrency import ProvisionedConcurrency, ProvisionedTarget
from lamina.invoke.events import LevelObserver, NoLevels
from lamina.model.functions import FunctionConfig
from lamina.sandbox.environment import ExecutionEnvironment, State
from lamina.store.stamped import StampedCache

log = logging.getLogger("lamina.invoke")

INITIALIZATION_TYPE = "provisioned-concurrency"
READY = "READY"
FAILED = "FAILED"
INIT_FAILURE = "FUNCTION_ERROR_INIT_FAILURE"

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


class ShareReadiness(Protocol):
    """Cluster mode: where a node notes that its share of a config is initialised."""

    def share_ready(self, function: str, qualifier: str, token: tuple[str, int], held: int) -> None:
        """This node holds its whole share, `held` environments, of the Put `token`; mark the
        config READY if every live worker's share is now ready. Blocking (store calls)."""
        ...


# How many of a config's environments (function, qualifier, requested) this node holds.
Share = Callable[[str, str, int], int]
# A version's environments on this node, per version of the config's split.
Split = list[tuple[FunctionConfig, int]]


class Allocation:
    """The environments one target holds of one version (its share of the config)."""

    def __init__(self, target: Target, version: FunctionConfig) -> None:
        self.target = target
        self.version = version.version
        self.revision = version.revision_id
        self.memory_mb = version.memory_size
        self.size = 0
        self.idle: list[ExecutionEnvironment] = []
        self.busy: set[ExecutionEnvironment] = set()
        self.retired = False

    @property
    def key(self) -> tuple[str, str, str]:
        return (*self.target, self.version)

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
        *,
        share: Share | None = None,
        placement_version: Callable[[], int] | None = None,
        readiness: ShareReadiness | None = None,
        max_age_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`share`, `placement_version` and `readiness` are for a cluster (left out: this node
        holds every config whole). Environment i of a config must be placed on the same node
        whatever the count, so that `share` of a prefix of the environments says which of
        them are this node's; `placement_version` moves whenever `share`'s answers may have.
        `max_age_s`: how long after its start began an environment may be handed out."""
        if share is not None and readiness is None:
            raise ValueError("a pool holding shares needs `readiness` to report status")
        self._configs = configs
        self._start = start
        self._levels: LevelObserver = levels or NoLevels()
        self._interval_s = interval_s
        # Environments started at once: a large request must not stall the host.
        self._batch = batch
        self._allocations: dict[tuple[str, str, str], Allocation] = {}
        # The live allocations of each function, for the invoke path.
        self._by_function: dict[str, list[Allocation]] = {}
        self._owners: dict[ExecutionEnvironment, Allocation] = {}
        # The stored configs, read again (in a worker thread) only after the store changed.
        self._targets = StampedCache(change_stamp, configs.provisioned_targets)
        # Cluster mode: function -> the environments its configs request, every node's.
        self._cluster_held: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._share = share
        self._placement_version = placement_version or (lambda: 0)
        self._readiness = readiness
        # This node's split of each wanted target, worked out again only when the targets or
        # the placement changed: placing a large config hashes every environment's key.
        self._placed: tuple[int, list[ProvisionedTarget], dict[Target, Split]] | None = None
        self._max_age_s = max_age_s
        self._clock = clock
        self._born: dict[ExecutionEnvironment, float] = {}
        # Busy environments past their age, dropped when released.
        self._retiring: set[ExecutionEnvironment] = set()

    # ------------------------------------------------------------- invoke path

    def take(
        self, function: str, qualifier: str | None, config: FunctionConfig
    ) -> ExecutionEnvironment | None:
        """An idle provisioned environment of `config`'s version, if there is one; those
        provisioned for the qualifier the caller named are taken first."""
        allocations = [
            allocation
            for allocation in self._by_function.get(function, ())
            if allocation.version == config.version and allocation.revision == config.revision_id
        ]
        allocations.sort(key=lambda allocation: allocation.target[1] != qualifier)
        for allocation in allocations:
            while allocation.idle:
                environment = allocation.idle.pop()
                if environment.state is State.IDLE:
                    allocation.busy.add(environment)
                    self._publish(allocation.target)
                    return environment
                self._drop(environment)
        return None

    def held(self, function: str) -> int:
        """Provisioned environments the function holds here, busy or idle, over all its
        configs."""
        return sum(allocation.held for allocation in self._by_function.get(function, ()))

    def carved_out(self, function: str) -> int:
        """What the function's provisioned environments take out of its reservation: on one
        node those it holds; in a cluster every node's (as its configs request them), since
        the reservation is the cluster's."""
        if self._share is not None:
            return self._cluster_held.get(function, 0)
        return self.held(function)

    def idle_by_version(self) -> dict[str, int]:
        """Idle provisioned environments by "function:version" (versions with none left out),
        for the node's heartbeat: where a call of that version would start at once."""
        idle: dict[str, int] = {}
        for function, allocations in self._by_function.items():
            for allocation in allocations:
                if allocation.idle:
                    key = f"{function}:{allocation.version}"
                    idle[key] = idle.get(key, 0) + len(allocation.idle)
        return idle

    def memory_mb(self) -> int:
        """The memory of this node's provisioned environments, idle and busy (those of a
        retired allocation too, until their invocation ends)."""
        return sum(allocation.memory_mb for allocation in self._owners.values())

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
            # Nearly always empty: one truth test on the invoke path.
            and not (self._retiring and environment in self._retiring)
        ):
            allocation.idle.append(environment)
            self._publish(allocation.target)
        else:
            self._drop(environment)

    # ------------------------------------------------------------- reconciling

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for key in list(self._allocations):
            self._retire(key)
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
        cluster_held: dict[str, int] = {}
        for target in wanted.values():
            cluster_held[target.function] = (
                cluster_held.get(target.function, 0) + target.config.requested
            )
        self._cluster_held = cluster_held
        splits = self._splits(targets, wanted)
        shares = {
            (*key, version.version): version.revision_id
            for key in wanted
            for version, _ in splits[key]
        }
        for allocation_key, allocation in list(self._allocations.items()):
            if shares.get(allocation_key) != allocation.revision:
                self._retire(allocation_key)
        for key, target in wanted.items():
            await self._converge(target, splits[key])

    def _splits(
        self, targets: list[ProvisionedTarget], wanted: dict[Target, ProvisionedTarget]
    ) -> dict[Target, Split]:
        if self._share is None:
            return {key: target.split() for key, target in wanted.items()}
        version = self._placement_version()
        placed = self._placed
        # The cache holds the very list it was worked out from: a re-read makes a new one.
        if placed is None or placed[0] != version or placed[1] is not targets:
            splits = {key: self._local_split(target) for key, target in wanted.items()}
            placed = self._placed = (version, targets, splits)
        return placed[2]

    def _local_split(self, target: ProvisionedTarget) -> Split:
        """This node's part of the config's split. Across the cluster the environments are
        numbered version by version in split order, and a node's part of the range a..b-1 is
        its share of the first b less its share of the first a."""
        assert self._share is not None
        split: Split = []
        placed_before = end = 0
        for version, count in target.split():
            end += count
            placed = self._share(target.function, target.qualifier, end)
            if placed > placed_before:
                split.append((version, placed - placed_before))
            placed_before = placed
        return split

    async def _converge(self, target: ProvisionedTarget, split: Split) -> None:
        key: Target = (target.function, target.qualifier)
        shares: list[tuple[Allocation, FunctionConfig]] = []
        for version, count in split:
            allocation = self._allocations.get((*key, version.version))
            if allocation is None:
                allocation = Allocation(key, version)
                self._allocations[allocation.key] = allocation
                self._by_function.setdefault(target.function, []).append(allocation)
            allocation.size = count
            # An idle environment whose runtime exited is dead: drop it so it is replaced.
            for dead in [env for env in allocation.idle if env.state is State.DEAD]:
                allocation.idle.remove(dead)
                self._drop(dead)
            self._age_out(allocation)
            while allocation.idle and allocation.held > allocation.size:
                self._drop(allocation.idle.pop())
            shares.append((allocation, version))
        for allocation, version in shares:
            while allocation.held < allocation.size:
                count = min(self._batch, allocation.size - allocation.held)
                failure = await self._grow(allocation, version, count)
                self._publish(key)
                if allocation.retired:
                    return
                if failure is not None:
                    log.warning("provisioned concurrency for %s:%s failed: %s", *key, failure)
                    for share, _ in shares:
                        self._retire(share.key)
                    await self._record(target, FAILED, 0, failure)
                    return
                current = await asyncio.to_thread(self._configs.provisioned_config, *key)
                if current is None or current.token != target.config.token:
                    return  # replaced or deleted meanwhile: the next pass takes it from here
        allocated = sum(allocation.size for allocation, _ in shares)
        if self._readiness is not None:
            # A node with no share has nothing to report; the node whose report completes
            # the set marks the config READY.
            if allocated and target.config.status != READY:
                await asyncio.to_thread(
                    self._readiness.share_ready, *key, target.config.token, allocated
                )
        elif target.config.status != READY or target.config.allocated != allocated:
            await self._record(target, READY, allocated)

    def _age_out(self, allocation: Allocation) -> None:
        """Drop the allocation's idle environments past their age (the pass replaces them),
        and mark its busy ones to be dropped when released."""
        if self._max_age_s is None:
            return
        oldest = self._clock() - self._max_age_s
        for environment in [env for env in allocation.idle if self._born[env] <= oldest]:
            allocation.idle.remove(environment)
            self._drop(environment)
        self._retiring |= {env for env in allocation.busy if self._born[env] <= oldest}

    async def _grow(
        self, allocation: Allocation, version: FunctionConfig, count: int
    ) -> str | None:
        """Start `count` environments; the first failure's description, if any failed."""
        born = self._clock()
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
                # AWS's StatusReason names the kind of failure only, not the error.
                failure = failure or INIT_FAILURE
                result.destroy()
            elif allocation.retired:
                result.destroy()
            else:
                allocation.idle.append(result)
                self._owners[result] = allocation
                self._born[result] = born
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

    def _retire(self, key: tuple[str, str, str]) -> None:
        allocation = self._allocations.pop(key, None)
        if allocation is None:
            return
        allocation.retired = True
        function = allocation.target[0]
        live = self._by_function.get(function, [])
        live.remove(allocation)
        if not live:
            self._by_function.pop(function, None)
        while allocation.idle:
            self._drop(allocation.idle.pop())
        self._publish(allocation.target)
        # Busy environments finish their invocation and are destroyed on release.

    def _drop(self, environment: ExecutionEnvironment) -> None:
        self._born.pop(environment, None)
        self._retiring.discard(environment)
        allocation = self._owners.pop(environment, None)
        if allocation is not None:
            allocation.busy.discard(environment)
            self._publish(allocation.target)
        environment.destroy()

    def _publish(self, target: Target) -> None:
        """Tell the level observer what the target holds now, over all its versions. Retired
        allocations hold nothing that counts (their busy environments are destroyed on
        release), so a target that is no longer provisioned reports (0, 0)."""
        function, qualifier = target
        busy = held = 0
        for allocation in self._by_function.get(function, ()):
            if allocation.target == target:
                busy += len(allocation.busy)
                held += allocation.held
        self._levels.provisioned_changed(function, qualifier, busy, held)
