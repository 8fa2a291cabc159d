"""Warm on-demand environments kept per function version and configuration, reaped when idle.

Provisioned environments are not kept here (see `invoke.provisioned`), so the reaper never
touches them.

Environments are also retired by age (`retire_after`): an environment's execution-role
credentials expire, so one older than its credentials allow is never handed out again. The
reaper does it, never the invoke path: it destroys such environments when idle and marks busy
ones, which are destroyed when released.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

from lamina.sandbox.environment import ExecutionEnvironment, State

# (function name, version, configuration revision): a change of configuration means new
# environments, as on AWS.
PoolKey = tuple[str, str, str]


class EnvironmentPool:
    """Hands out an idle environment for a key, or starts a new one."""

    def __init__(self, idle_timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._idle: dict[PoolKey, list[ExecutionEnvironment]] = defaultdict(list)
        self._all: set[ExecutionEnvironment] = set()
        self._keys: dict[ExecutionEnvironment, PoolKey] = {}
        # Keys of configurations that changed; their environments are never handed out again.
        self._stale: set[PoolKey] = set()
        self.idle_timeout_s = idle_timeout_s
        # Memory of environments being started: counted before the start awaits, so a
        # worker's room check and the start it admits cannot interleave with another's.
        self._starting_mb = 0
        # When each environment's start began (its credentials are issued after), and the
        # age past which none is handed out again; None: environments never age out.
        self._clock = clock
        self._born: dict[ExecutionEnvironment, float] = {}
        self._max_age_s: float | None = None
        # Busy environments past that age, destroyed when released.
        self._retiring: set[ExecutionEnvironment] = set()

    def retire_after(self, max_age_s: float) -> None:
        """Hand no environment out again once `max_age_s` have passed since its start began."""
        self._max_age_s = max_age_s

    async def acquire(
        self,
        key: PoolKey,
        start: Callable[[], Awaitable[ExecutionEnvironment]],
        memory_mb: int = 0,
    ) -> tuple[ExecutionEnvironment, bool]:
        """An idle warm environment (False) or a freshly started one (True).

        Concurrent calls for one key each get their own environment: that is how a
        function scales out.
        """
        idle = self._idle.get(key)
        while idle:
            environment = idle.pop()
            if environment.state is State.IDLE:
                return environment, False
            self._forget(environment)
        self._starting_mb += memory_mb
        born = self._clock()
        try:
            environment = await start()
        finally:
            self._starting_mb -= memory_mb
        self._all.add(environment)
        self._keys[environment] = key
        self._born[environment] = born
        return environment, True

    def release(self, environment: ExecutionEnvironment) -> None:
        key = self._keys.get(environment)
        if (
            environment.state is State.IDLE
            and key is not None
            and key not in self._stale
            # Nearly always empty: one truth test on the invoke path.
            and not (self._retiring and environment in self._retiring)
        ):
            environment.last_used = time.monotonic()
            self._idle[key].append(environment)
        else:
            environment.destroy()
            self._forget(environment)

    def discard_stale(self, is_current: Callable[[PoolKey], bool]) -> int:
        """Destroy idle environments whose configuration is no longer current.

        Busy environments of such a configuration finish their invocation and are destroyed
        when released.
        """
        discarded = 0
        for key in {key for key in self._keys.values() if key not in self._stale}:
            if is_current(key):
                continue
            self._stale.add(key)
            for environment in self._idle.pop(key, []):
                environment.destroy()
                self._forget(environment)
                discarded += 1
        # Forget stale keys nothing uses any more; revisions are never current again.
        self._stale &= set(self._keys.values())
        return discarded

    def reap(self, now: float | None = None) -> int:
        """Destroy environments idle longer than the timeout, any that died while idle, and
        idle ones past their age; mark busy ones past their age to go when released."""
        now = self._clock() if now is None else now
        aged = self._aged(now)
        reaped = 0
        for key, environments in list(self._idle.items()):
            keep = []
            for environment in environments:
                if (
                    now - environment.last_used > self.idle_timeout_s
                    or not environment.alive
                    or environment in aged
                ):
                    environment.destroy()
                    self._forget(environment)
                    reaped += 1
                else:
                    keep.append(environment)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        # What is left of the aged is busy (or starting its first invocation).
        self._retiring |= {environment for environment in aged if environment in self._all}
        return reaped

    def _aged(self, now: float) -> set[ExecutionEnvironment]:
        if self._max_age_s is None:
            return set()
        oldest = now - self._max_age_s
        return {environment for environment, born in self._born.items() if born <= oldest}

    @property
    def reap_interval_s(self) -> float:
        """How often to look for idle environments: often enough to honour short timeouts."""
        return min(1.0, max(0.05, self.idle_timeout_s / 4))

    def close(self) -> None:
        for environment in list(self._all):
            environment.destroy()
        self._all.clear()
        self._idle.clear()
        self._keys.clear()
        self._stale.clear()
        self._born.clear()
        self._retiring.clear()

    def environments_by_function(self) -> dict[str, int]:
        """How many environments (idle or busy) each function has. Metrics count them from
        lifecycle events instead; this is the pool's own view, for diagnostics and tests."""
        counts: dict[str, int] = {}
        for name, _, _ in self._keys.values():
            counts[name] = counts.get(name, 0) + 1
        return counts

    def has_idle(self, key: PoolKey) -> bool:
        return any(environment.state is State.IDLE for environment in self._idle.get(key, ()))

    @property
    def memory_mb(self) -> int:
        """The memory of every environment, idle, busy or starting."""
        return self._starting_mb + sum(environment.memory_mb for environment in self._all)

    @property
    def size(self) -> int:
        return len(self._all)

    def idle_by_version(self) -> dict[str, int]:
        """ "function:version" -> idle environments (a worker's warm hints to its cluster)."""
        counts: dict[str, int] = {}
        for (name, version, _), environments in self._idle.items():
            if environments:
                key = f"{name}:{version}"
                counts[key] = counts.get(key, 0) + len(environments)
        return counts

    def evict_idle(self, needed_mb: int, keep: PoolKey) -> bool:
        """Destroy idle environments of other keys, least recently used first, until
        `needed_mb` is freed; destroys nothing (False) when all of them would not free it."""
        candidates = sorted(
            (
                (environment.last_used, key, environment)
                for key, environments in self._idle.items()
                if key != keep
                for environment in environments
            ),
            key=lambda item: item[0],
        )
        if sum(environment.memory_mb for _, _, environment in candidates) < needed_mb:
            return False
        freed = 0
        for _, key, environment in candidates:
            if freed >= needed_mb:
                break
            self._idle[key].remove(environment)
            if not self._idle[key]:
                del self._idle[key]
            environment.destroy()
            self._forget(environment)
            freed += environment.memory_mb
        return True

    def _forget(self, environment: ExecutionEnvironment) -> None:
        self._all.discard(environment)
        self._keys.pop(environment, None)
        self._born.pop(environment, None)
        self._retiring.discard(environment)
