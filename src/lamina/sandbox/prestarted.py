"""Runtimes started before their function is known.

Most of a Node cold start is the interpreter's own start-up (V8, ICU, the built-in modules:
50 to 90 ms here before the bootstrap runs a line), and Node cannot fork an initialised
process as Python's templates do. Most of what is left of a templated Python cold start is
the sandbox itself: joining a cgroup and a network namespace, building the root, dropping to
a uid. So the namespace backend keeps a few runtimes started ahead for each kind of
environment it has recently started (`PrestartKey`): Node runtimes started afresh, Python ones
forked from their interpreter's template. Each one is fully in its sandbox already: its
namespaces, uid, cgroup, limits and network, its root built, and its bootstrap loaded and
blocked reading its assignment pipe. A cold start of that kind then only:

- mounts the function's code and layers on two host directories of the runtime's own, which
  its /var/task and /opt follow (read-only from the first instant: `mounts.attach_read_only`);
- writes the environment's variables down the assignment pipe and closes it.

The bootstrap takes those variables as its whole environment, moves into /var/task and starts
as a freshly started one would. Whatever is fixed when the interpreter starts is part of the
kind: its argv (Node's heap is sized from the memory), the variables Node, libuv, OpenSSL or
the C library read at start-up (none for Python: its template started with its own), the
memory and /tmp sizes, and the network.
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
from dataclasses import dataclass, field, replace
from pathlib import Path

import orjson

from lamina.model.networks import NetworkPolicy
from lamina.sandbox import mounts
from lamina.sandbox.api import SandboxSpec
from lamina.sandbox.cgroups import EnvironmentCgroup
from lamina.sandbox.network import Slot
from lamina.sandbox.zygote import TemplateChild

log = logging.getLogger(__name__)

# Runtimes kept started per kind: a burst's first few, and the next cold start after each.
PER_KIND = 2
# How long after a runtime is taken its replacement is started.
REFILL_DELAY_S = 0.05
# A kind not started for this long is let go, and a runtime this old is replaced rather than
# used: its copy of the host's mounts is at most this old, as a warm environment's may be.
MAX_AGE_S = 300.0
# Kinds kept at once (each holds PER_KIND idle runtimes: 7 to 8 MiB of PSS each for Node,
# about 3 for Python).
MAX_KINDS = 6
# A kind whose runtime could not be started ahead is started afresh for this long.
FAILED_KIND_S = 60.0
# The bootstrap reads its assignment from this variable's descriptor, and says it waits for
# one by writing to (and closing) the next's.
ASSIGNMENT_VARIABLE = "LAMINA_ASSIGNMENT_FD"
WAITING_VARIABLE = "LAMINA_WAITING_FD"
# How long a runtime may take to start and say it waits.
START_TIMEOUT_S = 10.0
# An assignment must fit the pipe's buffer: it is written whole, without waiting.
MAX_ASSIGNMENT_BYTES = 60_000
# Variables read when the process starts (by Node, libuv, OpenSSL, ICU or the C library),
# which a runtime started ahead cannot take later.
_STARTUP_PREFIXES = ("NODE_", "UV_", "LD_", "LC_", "OPENSSL_", "SSL_CERT_", "MALLOC_", "GLIBC_")
_STARTUP_NAMES = frozenset({"LANG", "LANGUAGE", "TZ"})
# Where the function's code and layers arrive, after the runtime has started.
_ARRIVING = ("/var/task", "/opt")
# Node options that load code as Node starts: the function's, which is not there yet.
_PRELOADS = ("-r", "--require", "--import", "--loader", "--experimental-loader")


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


def can_start_ahead(startup: tuple[tuple[str, str], ...]) -> bool:
    """Whether runtimes of a kind can start before their code is there: not when a start-up
    variable loads code (a preload in NODE_OPTIONS, LD_PRELOAD) or names a file of the code
    or layers (NODE_EXTRA_CA_CERTS=/var/task/...). Search paths may name their directories:
    NODE_PATH is read again once assigned, and LD_LIBRARY_PATH's get placeholders (see
    `library_directories`)."""
    for name, value in startup:
        if name == "NODE_OPTIONS" and any(
            option == preload or option.startswith(preload + "=")
            for option in value.split()
            for preload in _PRELOADS
        ):
            return False
        if name.startswith("LD_PRELOAD") or name == "LD_AUDIT":
            return False
        if name not in {"NODE_PATH", "LD_LIBRARY_PATH"} and any(
            place in value for place in _ARRIVING
        ):
            return False
    return True


def library_directories(startup: tuple[tuple[str, str], ...]) -> list[str]:
    """The directories under /var/task and /opt that LD_LIBRARY_PATH names, relative to the
    code points (`task/lib`, `opt/lib`). The C library's loader looks for each directory
    of the path once, when the runtime starts, and never again in one it did not find:
    each must exist by then, as an empty placeholder under where the code will arrive."""
    found = []
    for name, value in startup:
        if name != "LD_LIBRARY_PATH":
            continue
        for entry in value.split(":"):
            for place, point in (("/var/task", "task"), ("/opt", "opt")):
                if entry == place or entry.startswith(place + "/"):
                    relative = os.path.normpath(point + entry[len(place) :])
                    if relative == point or relative.startswith(point + "/"):
                        found.append(relative)
    return found


# A Node runtime is the server's child; a Python one, its template's.
RuntimeProcess = subprocess.Popen[bytes] | TemplateChild


@dataclass(eq=False)
class Prestarted:
    """One runtime waiting for its function, and what it holds on the host."""

    key: PrestartKey
    process: RuntimeProcess
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
    # Ended and being released (`NamespaceBackend._discard_prestarted`), once.
    discarded: bool = False

    def usable(self, now: float) -> bool:
        return self.process.poll() is None and now - self.born < MAX_AGE_S

    def assign(self, task_root: Path, opt_dir: Path | None, environment: dict[str, str]) -> None:
        """Give the runtime its function: code, layers, then variables (which start it)."""
        # One line (JSON escapes any newline in a value): the runtime reads up to its end.
        assignment = orjson.dumps({"environment": environment}) + b"\n"
        if len(assignment) > MAX_ASSIGNMENT_BYTES:
            raise OSError(7, "the environment is too large for an assignment")  # E2BIG
        mounts.attach_read_only(str(task_root), str(self.code_points / "task"))
        # Without layers, /opt is an empty directory, as in a fresh environment (not the
        # point with its placeholders).
        layers = opt_dir if opt_dir is not None else self.code_points.parent.parent / "empty"
        mounts.attach_read_only(str(layers), str(self.code_points / "opt"))
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


def prepare_code_parent(parent: Path) -> Path:
    """`parent`/<this server's pid>, where its runtimes' code points are made.

    `parent` is a private mount of its own (made once, and kept for every later server), so
    what is mounted on code points reaches no other mount namespace of the host: /run
    usually shares its mounts with every namespace copied from the host's. It also holds
    `empty`, the read-only /opt of a function without layers.
    """
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if str(parent) not in mounts.mount_points():
        mounts.mount(str(parent), str(parent), None, mounts.MS_BIND)
        mounts.mount(None, str(parent), None, mounts.MS_PRIVATE)
    (parent / "empty").mkdir(mode=0o755, exist_ok=True)
    own = parent / str(os.getpid())
    own.mkdir(mode=0o700, exist_ok=True)
    return own


def make_code_points(directory: Path, placeholders: list[str]) -> Path:
    """`directory`/task and /opt, each a shared mount of its own: what is later mounted on
    them propagates to the sandbox's /var/task and /opt (and nowhere else: see
    `prepare_code_parent`). `placeholders` are directories made below them, hidden once
    the code arrives (see `library_directories`)."""
    directory.mkdir(mode=0o700)
    try:
        for name in ("task", "opt"):
            point = str(directory / name)
            os.mkdir(point, 0o755)
            mounts.mount(point, point, None, mounts.MS_BIND)
            mounts.mount(None, point, None, mounts.MS_SHARED)
        for placeholder in placeholders:
            (directory / placeholder).mkdir(mode=0o755, parents=True, exist_ok=True)
    except BaseException:
        remove_code_points(directory)
        raise
    return directory


def remove_code_points(directory: Path) -> None:
    """Unmount what `make_code_points` and assignments mounted, and remove the directory
    (once the sandbox that followed them is gone)."""
    for name in ("task", "opt"):
        point = directory / name
        # The code (if any), then the point's own bind.
        for _ in range(2):
            try:
                mounts.umount(str(point), mounts.MNT_DETACH)
            except OSError:
                break
        _remove_tree(point)
    with contextlib.suppress(OSError):
        directory.rmdir()


def _remove_tree(directory: Path) -> None:
    """Remove the placeholders (empty directories) and `directory`, once nothing is
    mounted there."""
    for path in sorted(directory.glob("**/*"), key=lambda path: -len(path.parts)):
        with contextlib.suppress(OSError):
            path.rmdir()
    with contextlib.suppress(OSError):
        directory.rmdir()


def remove_stale_code_points(parent: Path) -> None:
    """The code points of servers that are gone (a crash): `parent`/<pid>/node-N."""
    if not parent.is_dir():
        return
    for entry in parent.iterdir():
        if not entry.name.isdigit() or Path(f"/proc/{entry.name}").exists():
            continue
        try:
            directories = list(entry.iterdir())
        except FileNotFoundError:
            continue  # another server starting at the same time removed it first
        for directory in directories:
            remove_code_points(directory)
        with contextlib.suppress(OSError):
            entry.rmdir()


Make = Callable[[PrestartKey, SandboxSpec], Awaitable[Prestarted]]


@dataclass(eq=False)
class _Kind:
    """One kind's runtimes and bookkeeping."""

    # The spec runtimes of the kind are made from: its first environment's, with only the
    # start-up variables (no function's credentials) and no Runtime API.
    template: SandboxSpec
    used: float
    ready: deque[Prestarted] = field(default_factory=deque)
    making: int = 0
    failed_until: float = 0.0


class PrestartPool:
    """Which kinds are wanted, and their runtimes started ahead.

    A kind is wanted from its first cold start (which starts fresh, and has the pool filled
    behind it) until MAX_AGE_S pass without one. `make` starts a runtime of a kind from the
    spec it was first seen with, and returns once the runtime waits for its function;
    `discard` ends one that will not be used.
    """

    def __init__(self, make: Make, discard: Callable[[Prestarted], None]) -> None:
        self._make = make
        self._discard = discard
        self._kinds: dict[PrestartKey, _Kind] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    def take(self, key: PrestartKey, spec: SandboxSpec) -> Prestarted | None:
        """A started runtime of `key`'s kind, or None (the cold start starts one afresh)."""
        if self._closed:
            return None
        now = time.monotonic()
        kind = self._kinds.get(key)
        if kind is None:
            if len(self._kinds) >= MAX_KINDS or not can_start_ahead(key.startup):
                return None
            startup = dict(key.startup)
            template = replace(spec, environment=startup, runtime_api=None)
            kind = self._kinds[key] = _Kind(template, now)
        kind.used = now
        while kind.ready:
            entry = kind.ready.popleft()
            if entry.usable(now):
                # Replaced once the environment is initialised (`refill_soon`): starting
                # another runtime now would take the CPU, and the server's loop, from it.
                return entry
            self._discard(entry)
        self.refill_soon(key)
        return None

    def refill_soon(self, key: PrestartKey) -> None:
        """Start runtimes of `key`'s kind until PER_KIND wait or are starting, once the
        environment just started has likely answered its first call: making one costs the
        server's loop ~2 ms (a cgroup, mounts, a fork), which that call would wait on."""
        asyncio.get_running_loop().call_later(REFILL_DELAY_S, self._refill, key)

    def ready(self, key: PrestartKey) -> int:
        """How many runtimes of `key`'s kind wait (tests and benchmarks)."""
        kind = self._kinds.get(key)
        return len(kind.ready) if kind is not None else 0

    def _refill(self, key: PrestartKey) -> None:
        kind = self._kinds.get(key)
        if self._closed or kind is None or time.monotonic() < kind.failed_until:
            return
        loop = asyncio.get_running_loop()
        for _ in range(PER_KIND - len(kind.ready) - kind.making):
            kind.making += 1
            task = loop.create_task(self._make_one(key, kind))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._sweeper is None:
            self._sweeper = loop.call_later(MAX_AGE_S / 4, self._sweep)

    async def _make_one(self, key: PrestartKey, kind: _Kind) -> None:
        try:
            entry = await self._make(key, kind.template)
        except Exception:
            # The kind's cold starts start afresh for a while, rather than each paying
            # for runtimes that fail again (a start-up variable Node refuses, say).
            kind.failed_until = time.monotonic() + FAILED_KIND_S
            log.warning("a runtime could not be started ahead", exc_info=True)
            return
        finally:
            kind.making -= 1
        if self._closed or self._kinds.get(key) is not kind:
            self._discard(entry)
        else:
            kind.ready.append(entry)

    def _sweep(self) -> None:
        """Let go of kinds no longer started, and replace runtimes grown too old."""
        self._sweeper = None
        now = time.monotonic()
        for key, kind in list(self._kinds.items()):
            stale = [entry for entry in kind.ready if not entry.usable(now)]
            for entry in stale:
                kind.ready.remove(entry)
                self._discard(entry)
            if now - kind.used >= MAX_AGE_S:
                del self._kinds[key]
                while kind.ready:
                    self._discard(kind.ready.popleft())
            elif stale:
                self._refill(key)
        if self._kinds and not self._closed:
            self._sweeper = asyncio.get_running_loop().call_later(MAX_AGE_S / 4, self._sweep)

    def close(self) -> None:
        """Discard every waiting runtime, and stop making more (one being made is discarded
        by its maker, which the caller stops)."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for task in self._tasks:
            task.cancel()
        for kind in self._kinds.values():
            while kind.ready:
                self._discard(kind.ready.popleft())
