"""Node runtimes started before their function is known.

Most of a Node cold start is the interpreter's own start-up (V8, ICU, the built-in modules:
50 to 90 ms here before the bootstrap runs a line), and Node cannot fork an initialised
process as Python's templates do. So the namespace backend keeps a few Node runtimes started
ahead for each kind of environment it has recently started (`PrestartKey`). Each one is fully
in its sandbox already: its namespaces, uid, cgroup, limits and network, its root built, and
its bootstrap loaded and blocked reading its assignment pipe. A cold start of that kind then
only:

- mounts the function's code and layers on two host directories of the runtime's own, which
  its /var/task and /opt follow (read-only from the first instant: `mounts.attach_read_only`);
- writes the environment's variables down the assignment pipe and closes it.

The bootstrap takes those variables as its whole environment, moves into /var/task and starts
as a freshly started one would. Whatever is fixed when the interpreter starts is part of the
kind: its argv (the heap is sized from the memory), the variables Node, libuv, OpenSSL or the
C library read at start-up, the memory and /tmp sizes, and the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from lamina.model.networks import NetworkPolicy
from lamina.sandbox import mounts
from lamina.sandbox.api import SandboxSpec
from lamina.sandbox.cgroups import EnvironmentCgroup
from lamina.sandbox.network import Slot

log = logging.getLogger(__name__)

# Runtimes kept started per kind: a burst's first few, and the next cold start after each.
PER_KIND = 2
# How long after a runtime is taken its replacement is started.
REFILL_DELAY_S = 0.05
# A kind not started for this long is let go, and a runtime this old is replaced rather than
# used: its copy of the host's mounts is at most this old, as a warm environment's may be.
MAX_AGE_S = 300.0
# Kinds kept at once (each holds PER_KIND idle runtimes, ~40 MB each).
MAX_KINDS = 4
# The bootstrap reads its assignment from this variable's descriptor.
ASSIGNMENT_VARIABLE = "LAMINA_ASSIGNMENT_FD"
# An assignment must fit the pipe's buffer: it is written whole, without waiting.
MAX_ASSIGNMENT_BYTES = 60_000
# Variables read when the process starts (by Node, libuv, OpenSSL, ICU or the C library),
# which a runtime started ahead cannot take later.
_STARTUP_PREFIXES = ("NODE_", "UV_", "LD_", "LC_", "OPENSSL_", "SSL_CERT_", "MALLOC_", "GLIBC_")
_STARTUP_NAMES = frozenset({"LANG", "LANGUAGE", "TZ"})


@dataclass(frozen=True)
class PrestartKey:
    """What a runtime started ahead must share with the environment it is given to."""

    argv: tuple[str, ...]
    startup: tuple[tuple[str, str], ...]
    memory_mb: int
    ephemeral_mb: int
    network: NetworkPolicy | None


def startup_variables(environment: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted(
            (name, value)
            for name, value in environment.items()
            if name in _STARTUP_NAMES or name.startswith(_STARTUP_PREFIXES)
        )
    )


@dataclass(eq=False)
class Prestarted:
    """One runtime waiting for its function, and what it holds on the host."""

    key: PrestartKey
    process: subprocess.Popen[bytes]
    # Read end of its stdout and stderr; write end of its assignment pipe.
    output_fd: int
    assignment_fd: int
    uid: int
    cgroup: EnvironmentCgroup | None
    slot: Slot | None
    # The host directory its root was built on, and the one holding `task` and `opt`, the
    # mount points its /var/task and /opt follow.
    staging: Path
    code_points: Path
    born: float = field(default_factory=time.monotonic)

    def usable(self, now: float) -> bool:
        return self.process.poll() is None and now - self.born < MAX_AGE_S

    def assign(self, task_root: Path, opt_dir: Path | None, environment: dict[str, str]) -> None:
        """Give the runtime its function: code, layers, then variables (which start it)."""
        assignment = orjson.dumps({"environment": environment})
        if len(assignment) > MAX_ASSIGNMENT_BYTES:
            raise OSError(7, "the environment is too large for an assignment")  # E2BIG
        mounts.attach_read_only(str(task_root), str(self.code_points / "task"))
        if opt_dir is not None:
            mounts.attach_read_only(str(opt_dir), str(self.code_points / "opt"))
        try:
            os.write(self.assignment_fd, assignment)
        finally:
            self.close_assignment()

    def close_assignment(self) -> None:
        """Without an assignment, the runtime reads the end of the pipe and exits."""
        if self.assignment_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.assignment_fd)
            self.assignment_fd = -1


def prepare_code_parent(parent: Path) -> None:
    """The directory every runtime's code points are made in: a private mount of its own,
    so what is mounted on them reaches no other mount namespace of the host (/run usually
    shares its mounts with every namespace copied from the host's)."""
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    mounts.mount(str(parent), str(parent), None, mounts.MS_BIND)
    mounts.mount(None, str(parent), None, mounts.MS_PRIVATE)


def make_code_points(directory: Path) -> Path:
    """`directory`/task and /opt, each a shared mount of its own: what is later mounted on
    them propagates to the sandbox's /var/task and /opt (and nowhere else: see
    `prepare_code_parent`)."""
    directory.mkdir(mode=0o700)
    try:
        for name in ("task", "opt"):
            point = str(directory / name)
            os.mkdir(point, 0o755)
            mounts.mount(point, point, None, mounts.MS_BIND)
            mounts.mount(None, point, None, mounts.MS_SHARED)
    except BaseException:
        remove_code_points(directory)
        raise
    return directory


def remove_code_points(directory: Path) -> None:
    """Unmount what `make_code_points` and assignments mounted, and remove the directory
    (once the sandbox that followed them is gone)."""
    for name in ("task", "opt"):
        point = str(directory / name)
        # The code (if any), then the point's own bind.
        for _ in range(2):
            try:
                mounts.umount(point, mounts.MNT_DETACH)
            except OSError:
                break
        with contextlib.suppress(OSError):
            os.rmdir(point)
    with contextlib.suppress(OSError):
        os.rmdir(directory)


def remove_stale_code_points(parent: Path, own: Path) -> None:
    """The code points of servers that are gone (a crash): `parent`/prestarted-<pid>."""
    for entry in parent.glob("prestarted-*"):
        owner = entry.name.removeprefix("prestarted-")
        if entry == own or not owner.isdigit() or Path(f"/proc/{owner}").exists():
            continue
        for directory in list(entry.iterdir()) if entry.is_dir() else []:
            remove_code_points(directory)
        with contextlib.suppress(OSError):
            mounts.umount(str(entry), mounts.MNT_DETACH)
        with contextlib.suppress(OSError):
            entry.rmdir()


Make = Callable[[PrestartKey, SandboxSpec], Awaitable[Prestarted]]


class PrestartPool:
    """Which kinds are wanted, and their runtimes started ahead.

    A kind is wanted from its first cold start (which starts fresh, and has the pool filled
    behind it) until MAX_AGE_S pass without one. `make` starts a runtime of a kind from the
    spec it was first seen with; `discard` ends one that will not be used.
    """

    def __init__(self, make: Make, discard: Callable[[Prestarted], None]) -> None:
        self._make = make
        self._discard = discard
        self._ready: dict[PrestartKey, deque[Prestarted]] = {}
        self._templates: dict[PrestartKey, SandboxSpec] = {}
        self._used: dict[PrestartKey, float] = {}
        self._making: dict[PrestartKey, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    def take(self, key: PrestartKey, spec: SandboxSpec) -> Prestarted | None:
        """A started runtime of `key`'s kind, or None (the cold start starts one afresh)."""
        if self._closed:
            return None
        now = time.monotonic()
        if key not in self._used:
            if len(self._used) >= MAX_KINDS:
                return None
            # Only what every environment of the kind shares: no function's credentials.
            startup = dict(key.startup)
            self._templates[key] = SandboxSpec(**{**spec.__dict__, "environment": startup})
            self._ready[key] = deque()
            self._making[key] = 0
        self._used[key] = now
        ready = self._ready[key]
        while ready:
            entry = ready.popleft()
            if entry.usable(now):
                # Replaced once the environment is initialised (`refill_soon`): starting
                # another runtime now would take the CPU, and the server's loop, from it.
                return entry
            self._discard(entry)
        self._fill(key)
        return None

    def refill_soon(self, key: PrestartKey) -> None:
        """Start runtimes of `key`'s kind until PER_KIND wait or are starting, once the
        environment just initialised has likely answered its first call: making one costs
        the server's loop ~2 ms (a cgroup, mounts, a fork), which that call would wait on."""
        asyncio.get_running_loop().call_later(REFILL_DELAY_S, self._refill, key)

    def _refill(self, key: PrestartKey) -> None:
        if not self._closed and key in self._ready:
            self._fill(key)

    def ready(self, key: PrestartKey) -> int:
        """How many runtimes of `key`'s kind wait (tests and benchmarks)."""
        return len(self._ready.get(key, ()))

    def _fill(self, key: PrestartKey) -> None:
        missing = PER_KIND - len(self._ready[key]) - self._making[key]
        loop = asyncio.get_running_loop()
        for _ in range(missing):
            self._making[key] += 1
            task = loop.create_task(self._make_one(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._sweeper is None:
            self._sweeper = loop.call_later(MAX_AGE_S / 4, self._sweep)

    async def _make_one(self, key: PrestartKey) -> None:
        try:
            entry = await self._make(key, self._templates[key])
        except Exception:
            # The next cold start of the kind starts afresh, and tries again behind it.
            log.warning("a Node runtime could not be started ahead", exc_info=True)
            return
        finally:
            if key in self._making:
                self._making[key] -= 1
        if self._closed or key not in self._ready:
            self._discard(entry)
        else:
            self._ready[key].append(entry)

    def _sweep(self) -> None:
        """Let go of kinds no longer started, and replace runtimes grown too old."""
        self._sweeper = None
        now = time.monotonic()
        for key in list(self._used):
            stale = [entry for entry in self._ready[key] if not entry.usable(now)]
            for entry in stale:
                self._ready[key].remove(entry)
                self._discard(entry)
            if now - self._used[key] >= MAX_AGE_S:
                for entry in self._ready.pop(key):
                    self._discard(entry)
                del self._used[key], self._templates[key], self._making[key]
            elif stale:
                self._fill(key)
        if self._used and not self._closed:
            self._sweeper = asyncio.get_running_loop().call_later(MAX_AGE_S / 4, self._sweep)

    def close(self) -> None:
        """Discard every waiting runtime; those still starting are discarded when they are."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for ready in self._ready.values():
            while ready:
                self._discard(ready.popleft())
