"""Warm environments kept per function version and configuration, reaped when idle."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

from lamina.sandbox.environment import ExecutionEnvironment, State

# (function name, version, configuration revision): a change of configuration means new
# environments, as on AWS.
PoolKey = tuple[str, str, str]


class EnvironmentPool:
    """Hands out an idle environment for a key, or starts a new one."""

    def __init__(self, idle_timeout_s: float) -> None:
        self._idle: dict[PoolKey, list[ExecutionEnvironment]] = defaultdict(list)
        self._all: set[ExecutionEnvironment] = set()
        self._keys: dict[ExecutionEnvironment, PoolKey] = {}
        self.idle_timeout_s = idle_timeout_s
        self._reaper: asyncio.Task[None] | None = None

    async def acquire(
        self, key: PoolKey, start: Callable[[], Awaitable[ExecutionEnvironment]]
    ) -> tuple[ExecutionEnvironment, bool]:
        """An idle warm environment (False) or a freshly started one (True)."""
        idle = self._idle.get(key)
        while idle:
            environment = idle.pop()
            if environment.state is State.IDLE:
                return environment, False
            self._forget(environment)
        environment = await start()
        self._all.add(environment)
        self._keys[environment] = key
        return environment, True

    def release(self, environment: ExecutionEnvironment) -> None:
        if environment.state is State.IDLE:
            self._idle[self._keys[environment]].append(environment)
        else:
            environment.destroy()
            self._forget(environment)

    def discard_stale(self, function: str, current: set[PoolKey]) -> None:
        """Destroy idle environments of `function` whose configuration is no longer current."""
        for key in [key for key in self._idle if key[0] == function and key not in current]:
            for environment in self._idle.pop(key):
                environment.destroy()
                self._forget(environment)

    def reap(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        reaped = 0
        for key, environments in list(self._idle.items()):
            keep = []
            for environment in environments:
                if now - environment.last_used > self.idle_timeout_s or not environment.alive:
                    environment.destroy()
                    self._forget(environment)
                    reaped += 1
                else:
                    keep.append(environment)
            self._idle[key] = keep
        return reaped

    def start_reaper(self, interval_s: float = 1.0) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(interval_s)
                self.reap()

        self._reaper = asyncio.ensure_future(loop())

    def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for environment in list(self._all):
            environment.destroy()
        self._all.clear()
        self._idle.clear()
        self._keys.clear()

    def idle_count(self, function: str | None = None) -> int:
        return sum(
            len(environments)
            for key, environments in self._idle.items()
            if function is None or key[0] == function
        )

    def _forget(self, environment: ExecutionEnvironment) -> None:
        self._all.discard(environment)
        self._keys.pop(environment, None)
