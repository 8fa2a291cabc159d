"""The Linux backend: namespaces, a cgroup and a uid of its own for every environment.

An environment's runtime starts in new mount, PID, IPC, UTS and cgroup namespaces, on a root
built from read-only binds (see `mounts`), as a uid no other environment uses, inside a cgroup
that enforces MemorySize, a memory-proportional CPU share and 1,024 processes, and in a
network namespace of its own taken from a prepared pool (see `network`): the host's loopback
and addresses are out of reach, outbound traffic leaves through NAT, and its Runtime API
listens inside that namespace at 127.0.0.1:9001, as on AWS. Without network isolation it keeps
the host's network and its Runtime API admits only its own uid.

The runtime is process 1 of its PID namespace and a direct child of the server: the server
thread enters a fresh PID namespace for its children just around the fork, so no helper
process sits in between, the exit status is the runtime's own, and killing the runtime ends
every process of the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from lamina.model.networks import NetworkPolicy
from lamina.sandbox import limits, mounts, prestarted, shares
from lamina.sandbox.api import EntrypointError, SandboxSpec, exec_failure
from lamina.sandbox.cgroups import MAX_PIDS, CgroupManager, EnvironmentCgroup, Limits
from lamina.sandbox.cpu_cap import cap_after_init
from lamina.sandbox.network import (
    NetworkIsolation,
    NetworkOptions,
    NetworkUnavailable,
    Slot,
)
from lamina.sandbox.network.resolvers import namespace_resolv_conf
from lamina.sandbox.network.slots import CLONE_NEWNET
from lamina.sandbox.prestarted import Prestarted, PrestartKey, PrestartPool
from lamina.sandbox.prestarted import RuntimeProcess as Process
from lamina.sandbox.process import PeakMemory, loopback_listener
from lamina.sandbox.runtime_files import NODE_BOOTSTRAP, RUNTIMES_DIR
from lamina.sandbox.snapshots import SnapshotIsolation, spawn_snapshot
from lamina.sandbox.zygote import ReadyRoot, TemplateChild, Templates
from lamina.stop_steps import stop_step

log = logging.getLogger(__name__)

# Environments run as uids from here on, in blocks claimed per server through a lock file,
# far above any account a host would create.
UID_BASE = 2_000_000_000
UID_BLOCK = 4096
_UID_BLOCKS = 256
_CLEANUP_DELAYS = (0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
_LISTEN_ATTEMPTS = 3
# Ending what a previous server left as a block's uids: passes, and the wait after each kill.
_LEFTOVER_PASSES = 50
_LEFTOVER_WAIT_S = 0.01
# The login name of the user a function runs as on AWS; each environment's own uid has it.
USER_NAME = "sbx_user1051"


class UidPool:
    """uids for environments; a uid is reused only after its environment is gone.

    `ends_leftovers`: a block claimed is first rid of what still runs as its uids (see
    `end_leftovers`). Only for the host's own lock directory, which every server on the host
    claims blocks through: a pool with a directory of its own proves nothing by its locks.
    """

    def __init__(self, lock_dir: Path, *, ends_leftovers: bool = False) -> None:
        self._lock_dir = lock_dir
        self._ends_leftovers = ends_leftovers
        self._locks: list[IO[str]] = []
        self._free: deque[int] = deque()
        self._blocks: list[int] = []
        self._closed = False

    def _claim_block(self) -> None:
        if self._closed:
            raise RuntimeError("the pool of environment uids is closed")
        self._lock_dir.mkdir(parents=True, exist_ok=True)
        for block in range(_UID_BLOCKS):
            handle = open(self._lock_dir / f"uids-{block}.lock", "a", encoding="ascii")  # noqa: SIM115
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            self._locks.append(handle)
            self._blocks.append(block)
            start = UID_BASE + block * UID_BLOCK
            if self._ends_leftovers:
                end_leftovers(range(start, start + UID_BLOCK))
            self._free.extend(range(start, start + UID_BLOCK))
            return
        raise RuntimeError(f"every block of environment uids is in use ({self._lock_dir})")

    @property
    def block(self) -> int:
        """The first block this server holds (claimed now if none yet): it also names the
        server's network addresses, table and namespaces."""
        if not self._blocks:
            self._claim_block()
        return self._blocks[0]

    def acquire(self) -> int:
        if not self._free:
            self._claim_block()
        return self._free.popleft()

    def acquire_run(self, count: int) -> list[int]:
        """`count` consecutive uids: a user namespace's uid map is written in one page and
        holds a few hundred lines at most, so a snapshot's uids must collapse into one."""
        while (start := _run_start(self._free, count)) is None:
            self._claim_block()
        self._free = deque(uid for uid in self._free if not start <= uid < start + count)
        return list(range(start, start + count))

    def release(self, uid: int) -> None:
        if not self._closed:
            self._free.append(uid)

    def close(self) -> None:
        """Let the blocks go: none of their uids is handed out any more."""
        self._closed = True
        self._free.clear()
        self._blocks.clear()
        for handle in self._locks:
            handle.close()
        self._locks.clear()


def end_leftovers(uids: range) -> None:
    """Kill whatever still runs as one of `uids`, whose block this server has just claimed.

    A server that died left it: function code can clear its own parent-death signal, and a
    runtime that has not set it yet misses the server's death. Holding the block's lock in
    the host's lock directory proves that no live server of the host hands these uids out
    (no runtime inherits the lock's descriptor), so everything running as them is such a
    leftover. A few passes: what was killed may take a moment to end, and a leftover may
    fork meanwhile.
    """
    for attempt in range(_LEFTOVER_PASSES):
        leftovers = _running_as(uids)
        if not leftovers:
            return
        if not attempt:
            log.warning("ending %d processes a previous server left as its uids", len(leftovers))
        for pid in leftovers:
            _kill_if_running_as(pid, uids)
        time.sleep(_LEFTOVER_WAIT_S)
    log.error("processes a previous server left as uids %d-%d would not end", uids[0], uids[-1])


def _running_as(uids: range) -> list[int]:
    """Processes any of whose real, effective, saved or file system uids is in `uids` and
    that still run: not zombies, unless only their first thread has ended (function code
    can end it and go on in others, which /proc then shows as a zombie)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and _runs_as(name, uids):
            found.append(int(name))
    return found


def _runs_as(pid: str, uids: range) -> bool:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            text = status.read()
        state = text.split("\nState:\t", 1)[1][0]
        ids = text.split("\nUid:\t", 1)[1].split("\n", 1)[0].split()
        if not any(int(uid) in uids for uid in ids):
            return False
        return state != "Z" or len(os.listdir(f"/proc/{pid}/task")) > 1
    except (OSError, IndexError, ValueError):
        return False


def _kill_if_running_as(pid: int, uids: range) -> None:
    """SIGKILL `pid` through a pidfd, once it is known to be still the process found: a pid
    that ended since the scan and was given to another process is left alone."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return  # ended
    try:
        if _runs_as(str(pid), uids):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except OSError:
        pass  # ended meanwhile
    finally:
        os.close(pidfd)


def _run_start(free: deque[int], count: int) -> int | None:
    """The first of `count` consecutive uids all in `free`, if there are such."""
    start, length = -1, 0
    for uid in sorted(free):
        start, length = (start, length + 1) if uid == start + length else (uid, 1)
        if length == count:
            return start
    return None


def _installations(executable: str) -> list[str]:
    """The install prefixes an interpreter needs (its own and the one its symlinks lead to)."""
    found = []
    for path in (executable, os.path.realpath(executable)):
        directory = os.path.dirname(path)
        found.append(os.path.dirname(directory) if directory.endswith("/bin") else directory)
    return list(dict.fromkeys(found))


def _resolver_paths() -> list[str]:
    """resolv.conf may point into /run (systemd-resolved); keep its directory visible."""
    target = os.path.realpath("/etc/resolv.conf")
    if target.startswith("/etc/") or not os.path.exists(target):
        return []
    return [os.path.dirname(target)]


def _remove_stale_staging(lock_dir: Path) -> None:
    """The ready children's staging directories of servers that are gone (a crash)."""
    for entry in lock_dir.glob("ready-root-*"):
        owner = entry.name.removeprefix("ready-root-").split("-", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            with contextlib.suppress(OSError):
                entry.rmdir()


@functools.lru_cache(maxsize=64)
def _resolved(directory: Path) -> str:
    """Where a directory of the server's own layout (the code cache's root, the scratch
    root) really is: fixed for the server's life, so resolved once rather than per start."""
    return str(directory.resolve())


def _resolv_conf(spec: SandboxSpec, default: str) -> str:
    """The resolvers of the environment's network, else `default` ("": the host's)."""
    servers = spec.network.dns if spec.network is not None else ()
    return "".join(f"nameserver {server}\n" for server in servers) or default


class NamespaceSandbox:
    """One environment's process tree, uid and cgroup."""

    tmp_dir = Path("/tmp")

    def __init__(
        self,
        process: subprocess.Popen[bytes] | TemplateChild,
        output_fd: int,
        uid: int,
        cgroup: EnvironmentCgroup | None,
        release: Callable[[NamespaceSandbox], None],
        staging: Path,
        slot: Slot | None = None,
        code_points: Path | None = None,
    ) -> None:
        self._process = process
        # A runtime started ahead: the host mount points its code arrived on.
        self.code_points = code_points
        # The network namespace it runs in, given back once its processes are all gone.
        self.slot = slot
        self.pid = process.pid
        self.output_fd = output_fd
        self.uid = uid
        self.cgroup = cgroup
        self._release = release
        self._staging = staging
        self._peak = PeakMemory(self.pid)
        self._runtime_peak: int | None = None
        self._group_seen: int | None = None
        self._released = False
        self._cleanup: asyncio.Task[None] | None = None
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        _watch_exit(process, self._exited)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def kill(self) -> None:
        # The runtime is process 1 of its PID namespace: killing it ends every process there.
        # Once it is known to have ended (and been reaped), its pid may be another
        # process's: only its cgroup is left to empty. A template's child is signalled
        # through its pidfd, as its template may have reaped it before its exit is known.
        if isinstance(self._process, TemplateChild):
            self._process.kill()
        elif not self._exited.done():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill()

    def max_memory_bytes(self) -> int | None:
        """The runtime's peak resident memory, pages shared with a template included (as a
        fresh process would count them), or the cgroup's peak where that is higher: it also
        counts processes the function started. A template's child is charged to the cgroup
        only for the pages it did not share, so the cgroup alone would read a few MB."""
        group = self.cgroup.peak_bytes() if self.cgroup is not None else None
        # The status file costs more than the rest of a REPORT: read it again only when
        # the cgroup's peak moved, since the function's own new pages are charged there
        # first. (Shared pages touched for the first time are not; their rise shows at the
        # next private growth.)
        if group is None or group != self._group_seen or self._runtime_peak is None:
            self._group_seen = group
            self._runtime_peak = self._peak.bytes()
        runtime = self._runtime_peak
        if runtime is None or group is None:
            return runtime if group is None else group
        return max(runtime, group)

    def oom_killed(self) -> bool:
        return self.cgroup is not None and self.cgroup.oom_kills() > 0

    def cleanup(self) -> None:
        self._peak.close()
        with contextlib.suppress(OSError):
            os.close(self.output_fd)
        if self._try_release():
            return
        with contextlib.suppress(RuntimeError):
            self._cleanup = asyncio.get_running_loop().create_task(self._release_later())

    def _try_release(self) -> bool:
        if self._released:
            return True
        if self._process.poll() is None:
            return False
        if self.cgroup is not None and not self.cgroup.remove():
            self.cgroup.kill()
            return False
        with contextlib.suppress(OSError):
            self._staging.rmdir()
        self._released = True
        self._release(self)
        return True

    async def _release_later(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._exited), 5)
        for delay in _CLEANUP_DELAYS:
            if self._try_release():
                return
            await asyncio.sleep(delay)
        if not self._try_release():
            # Held, not handed to another environment: safe, but the operator should know.
            log.warning(
                "environment sandbox %s (pid %s) would not end or empty its cgroup; its uid "
                "%s and network slot stay held until the server stops",
                self._staging,
                self.pid,
                self.uid,
            )

    def release_now(self, deadline: float) -> None:
        """Kill, wait and release synchronously (when the server stops)."""
        if self._cleanup is not None:
            self._cleanup.cancel()
        self.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(max(0.0, deadline - time.monotonic()))
        while not self._try_release() and time.monotonic() < deadline:
            time.sleep(0.01)


class NamespaceBackend:
    """Namespaces + cgroup + a uid per environment (Linux, as root)."""

    name = "namespace"

    def __init__(
        self,
        cgroups: CgroupManager | None,
        cgroup_reason: str,
        hidden: Iterable[Path] = (),
        lock_dir: Path | None = None,
        network: NetworkOptions | None = None,
        network_reason: str = "not asked for",
    ) -> None:
        self._spawner = PidNamespaceSpawner()
        # Fresh runtimes are spawned off the event loop: the fork copies the server's page
        # tables, and the spawn then waits while the child builds its root and execs (8 to
        # 9 ms a start in all, measured). A runtime's parent-death signal follows the
        # thread that forked it, and these threads live as long as the backend.
        self._spawn_threads = ThreadPoolExecutor(2, thread_name_prefix="lamina-spawn")
        self._templates: Templates | None = None
        self._ready_staging = ""
        self._cgroups = cgroups
        self._cgroup_reason = cgroup_reason
        self._hidden = [str(path.resolve()) for path in hidden]
        self._lock_dir = lock_dir or _lock_dir()
        self._uids = UidPool(self._lock_dir, ends_leftovers=lock_dir is None)
        self._system = mounts.system_layout()
        self._resolver = _resolver_paths()
        self._live: set[NamespaceSandbox] = set()
        self._installs: dict[str, list[str]] = {}
        self._passwd = HostPasswd()
        # What the gateway for function code reads (`network.gateway_address`); None when
        # environments keep the host's network, for `network_reason`.
        self.network: NetworkIsolation | None = None
        self.network_reason = network_reason
        if network is not None:
            try:
                self.network = NetworkIsolation.open(self._uids.block, network)
            except NetworkUnavailable as error:
                self.network_reason = f"unavailable: {error}"
        # What replaces the host's resolv.conf when its resolvers are on its loopback.
        self._namespace_resolvers = namespace_resolv_conf() if self.network else ""
        # Slots taken for an environment's Runtime API (`listen`), until its `start`.
        self._reserved: dict[str, Slot] = {}
        # Runtimes started ahead (`use_templates`), and those taken by `listen`.
        self._prestarted: PrestartPool | None = None
        self._assigned: dict[str, Prestarted] = {}
        self._code_points = Path()
        self._prestart_thread: ThreadPoolExecutor | None = None
        self._prestarts = 0
        # Runtimes being started ahead, until the pool has them (or they are given up).
        self._making: set[_Held] = set()
        # Groups of starts that came to nothing, removed once their killed processes exit.
        self._emptying: dict[asyncio.Task[bool], EnvironmentCgroup] = {}
        self._closed = False

    # ----------------------------------------------------------------------- start

    async def listen(self, spec: SandboxSpec) -> socket.socket:
        """The Runtime API's socket inside the network namespace the environment will run
        in (taken from the pool now), or on the host's loopback without network isolation."""
        entry = self._take_prestarted(spec)
        if entry is not None:
            try:
                if entry.slot is None or self.network is None:
                    listener = loopback_listener()
                else:
                    listener = self.network.listen(entry.slot)
            except OSError:
                # As for a slot's listener that fails: start afresh, in a slot of its own.
                log.warning("no Runtime API for a runtime started ahead", exc_info=True)
                self._discard_prestarted(entry)
            else:
                self._assigned[spec.scratch_root.name] = entry
                return listener
        if self.network is None:
            return loopback_listener()
        attempts = _LISTEN_ATTEMPTS
        while True:
            slot = await self.network.take(spec.network)
            try:
                listener = self.network.listen(slot)
            except OSError as error:
                self.network.discard(slot)
                attempts -= 1
                # A slot given back while its last environment's listener was still closing
                # (event loops close sockets at the end of an iteration): take another.
                if error.errno != errno.EADDRINUSE or not attempts:
                    raise
                continue
            except BaseException:
                self.network.discard(slot)
                raise
            self._reserved[spec.scratch_root.name] = slot
            return listener

    def abandon(self, spec: SandboxSpec) -> None:
        """What `listen` took for an environment that will not start after all."""
        entry = self._assigned.pop(spec.scratch_root.name, None)
        if entry is not None:
            self._discard_prestarted(entry)
        slot = self._reserved.pop(spec.scratch_root.name, None)
        if slot is not None and self.network is not None:
            self.network.give_back(slot)

    async def start(self, spec: SandboxSpec) -> NamespaceSandbox:
        entry = self._assigned.pop(spec.scratch_root.name, None)
        if entry is not None:
            assigned = self._assign(entry, spec)
            if assigned is not None:
                return assigned
        return await self._start_afresh(spec)

    async def _start_afresh(self, spec: SandboxSpec) -> NamespaceSandbox:
        environment_id = spec.scratch_root.name
        slot, uid = await self._slot_and_uid(environment_id, spec.network)
        cgroup: EnvironmentCgroup | None = None
        read_fd = write_fd = -1
        try:
            if self._cgroups is not None:
                wanted = Limits(spec.memory_mb * 1024 * 1024, spec.memory_mb)
                cgroup = self._cgroups.create(environment_id, wanted)
            spec.scratch_root.mkdir(parents=True, exist_ok=True)
            mapping = self._mapping(spec)
            argv = [mounts.inside_paths(arg, mapping) for arg in spec.command]
            environment = {
                key: mounts.inside_paths(v, mapping) for key, v in spec.environment.items()
            }
            plan = self._plan(spec, argv[0], uid)
            channel = spec.runtime_api
            if channel is not None:
                # Set before anything runs as `uid`: the runtime may connect at once. In a
                # namespace of its own, only the environment can reach its Runtime API.
                channel.peer_uid = uid if slot is None else None
                if cgroup is not None:
                    cap_after_init(channel, cgroup, spec.memory_mb)
            read_fd, write_fd = os.pipe()
            os.set_blocking(read_fd, False)
            starting: asyncio.Future[Process]
            if self._templates is not None and Templates.forks(spec):
                starting = asyncio.ensure_future(
                    self._fork_from_template(
                        spec.command[0],
                        environment,
                        write_fd,
                        plan,
                        uid,
                        cgroup,
                        spec.memory_mb,
                        slot,
                    )
                )
            else:
                procs = cgroup.procs_files if cgroup else []
                netns_fd = slot.fd if slot is not None else -1
                enter = enter_sandbox(plan, uid, procs, spec.memory_mb, netns_fd)
                starting = asyncio.get_running_loop().run_in_executor(
                    self._spawn_threads, self._spawn, argv, environment, write_fd, enter
                )
            try:
                process = await asyncio.shield(starting)
                if self._closed:
                    # Closed meanwhile: this runtime ends as every other the backend had.
                    raise _ClosedWhileStarting
            except (asyncio.CancelledError, _ClosedWhileStarting):
                # The fork goes on, and may yet start a runtime: what it holds (the pipe's
                # ends, the uid, the cgroup, the namespace) stays held until that has ended.
                fds, read_fd, write_fd = (read_fd, write_fd), -1, -1
                release = functools.partial(self._release_start, spec, uid, cgroup, slot, None)
                starting.add_done_callback(
                    functools.partial(_end_what_was_started, fds=fds, then=release)
                )
                uid = -1
                raise
        except BaseException as error:
            if read_fd >= 0:
                os.close(read_fd)
            if uid >= 0:
                self._release_start(spec, uid, cgroup, slot, error)
            raise
        finally:
            if write_fd >= 0:
                os.close(write_fd)
        sandbox = NamespaceSandbox(
            process, read_fd, uid, cgroup, self._released, spec.scratch_root, slot
        )
        self._live.add(sandbox)
        return sandbox

    def _release_start(
        self,
        spec: SandboxSpec,
        uid: int,
        cgroup: EnvironmentCgroup | None,
        slot: Slot | None,
        error: BaseException | None,
    ) -> None:
        """What a start that failed held, once nothing it started can still run."""
        if cgroup is not None:
            self._remove_group(cgroup)
        with contextlib.suppress(OSError):
            spec.scratch_root.rmdir()
        self._uids.release(uid)
        if slot is not None:
            self._return_slot(slot, error)

    # ----------------------------------------------------------- runtimes started ahead

    def _prestart_key(self, spec: SandboxSpec) -> PrestartKey | None:
        """The kind of a Node or templated Python environment, or None for one no runtime is
        started ahead for (another runtime, or access points, whose mounts are made as the
        root is built)."""
        if self._prestarted is None or spec.file_systems or not spec.command:
            return None
        if Templates.serves(spec.command):
            if not Templates.forks(spec):
                return None  # started afresh (see `Templates.forks`)
            # Forked from the interpreter's template (the command as the host names it),
            # which started with variables of its own: the function's are all read later.
            return PrestartKey(spec.command, (), spec.memory_mb, spec.ephemeral_mb, spec.network)
        if spec.command[-1] != str(NODE_BOOTSTRAP):
            return None
        mapping = self._mapping(spec)
        argv = tuple(mounts.inside_paths(arg, mapping) for arg in spec.command)
        inside = {name: mounts.inside_paths(v, mapping) for name, v in spec.environment.items()}
        startup = prestarted.startup_variables(inside)
        return PrestartKey(argv, startup, spec.memory_mb, spec.ephemeral_mb, spec.network)

    def _take_prestarted(self, spec: SandboxSpec) -> Prestarted | None:
        key = self._prestart_key(spec)
        if key is None or self._prestarted is None:
            return None
        return self._prestarted.take(key, spec)

    async def _make_prestarted(self, key: PrestartKey, template: SandboxSpec) -> Prestarted:
        """A runtime in a sandbox of `key`'s kind, once it waits for its assignment: Node
        started afresh, or Python forked from its template.

        `template` is the kind's first environment, with only its start-up variables: its
        code's location tells which of the server's directories to hide, as for any root.
        """
        slot = await self.network.take(key.network) if self.network is not None else None
        self._prestarts += 1
        name = f"ahead-{self._prestarts}"
        held = _Held(slot, template.scratch_root.parent / name)
        self._making.add(held)
        try:
            held.uid = self._uids.acquire()
            if self._cgroups is not None:
                wanted = Limits(key.memory_mb * 1024 * 1024, key.memory_mb)
                held.cgroup = self._cgroups.create(f"prestarted-{os.getpid()}-{name}", wanted)
            placeholders = prestarted.library_directories(key.startup)
            held.code_points = prestarted.make_code_points(self._code_points / name, placeholders)
            held.staging.mkdir(parents=True, exist_ok=True)
            plan = replace(
                self._plan(replace(template, scratch_root=held.staging), key.argv[0], held.uid),
                task_root=str(held.code_points / "task"),
                opt_dir=str(held.code_points / "opt"),
                code_follows_host=True,
            )
            spawning = await self._prestart_fork(key, plan, held)
        except BaseException:
            self._release_held(held)
            raise
        try:
            process = await asyncio.shield(spawning)
        except asyncio.CancelledError:
            if self._closed and Templates.serves(key.argv):
                # The template is gone with the backend, and so is its answer: what it
                # may have forked ends with it (its parent-death signal), or in the cgroup.
                self._release_held(held)
            else:
                # The descriptors stay open until the fork is over; what it started is ended.
                spawning.add_done_callback(lambda done: self._spawned_too_late(done, held))
            raise
        except BaseException:
            self._release_held(held)
            raise
        entry = held.entry(key, process)
        try:
            await _until_waiting(held.waiting_read)
        except BaseException:
            self._discard_prestarted(entry)
            raise
        finally:
            self._making.discard(held)
        return entry

    async def _prestart_fork(
        self, key: PrestartKey, plan: mounts.RootPlan, held: _Held
    ) -> asyncio.Future[Process]:
        """The fork of a runtime started ahead, under way, with its pipes: output,
        assignment, and the one it says it waits on."""
        held.pipes()
        if Templates.serves(key.argv):
            assert self._templates is not None
            template = await self._templates.get(key.argv[0])
            forking = await template.request_fork(
                {},
                mounts.TASK_ROOT,
                limits.namespace_limits(None if held.cgroup else key.memory_mb),
                held.output_write,
                _template_sandbox(plan, held.uid, held.cgroup, held.slot),
                held.slot.fd if held.slot is not None else None,
                (held.assignment_read, held.waiting_write),
            )
            loop = asyncio.get_running_loop()
            forked: asyncio.Future[Process] = loop.create_future()

            def child(done: asyncio.Future[TemplateChild]) -> None:
                if forked.done():
                    return
                if done.cancelled():
                    forked.cancel()
                elif (error := done.exception()) is not None:
                    forked.set_exception(error)
                else:
                    forked.set_result(done.result())

            forking.add_done_callback(child)
            return forked
        spawn = self._prestart_spawn(key, plan, held)
        return asyncio.get_running_loop().run_in_executor(self._prestart_thread, spawn)

    def _prestart_spawn(
        self, key: PrestartKey, plan: mounts.RootPlan, held: _Held
    ) -> Callable[[], subprocess.Popen[bytes]]:
        """The spawn of a Node runtime started ahead (run on `_prestart_thread`)."""
        environment = {
            **dict(key.startup),
            prestarted.ASSIGNMENT_VARIABLE: str(held.assignment_read),
            prestarted.WAITING_VARIABLE: str(held.waiting_write),
        }
        procs = held.cgroup.procs_files if held.cgroup else []
        netns = held.slot.fd if held.slot else -1
        enter = enter_sandbox(plan, held.uid, procs, key.memory_mb, netns)
        argv, output, kept = (
            list(key.argv),
            held.output_write,
            (held.assignment_read, held.waiting_write),
        )

        def spawn() -> subprocess.Popen[bytes]:
            # Kept on `held` too: a backend that closes ends it (see `_give_up_making`).
            held.process = self._spawner.spawn(argv, environment, output, enter, kept)
            return held.process

        return spawn

    def _spawned_too_late(self, done: asyncio.Future[Process], held: _Held) -> None:
        if not held.released:  # else by `close`, which ended what was started
            _end_what_was_started(done, (), lambda: self._release_held(held))

    def _release_held(self, held: _Held) -> None:
        """What a runtime started ahead held, when it never became one (none runs there)."""
        if held.released:
            return
        held.released = True
        self._making.discard(held)
        held.close_pipes()
        if held.cgroup is not None:
            self._remove_group(held.cgroup)
        if held.code_points is not None:
            prestarted.remove_code_points(held.code_points)
        with contextlib.suppress(OSError):
            held.staging.rmdir()
        if held.uid >= 0:
            self._uids.release(held.uid)
        if held.slot is not None and self.network is not None:
            self.network.discard(held.slot)
        self._remove_code_parent_once_closed()

    def _remove_group(self, cgroup: EnvironmentCgroup) -> None:
        """Empty and remove the group of a start that came to nothing. Its processes take a
        moment to exit after SIGKILL: until they have, removal is retried from the loop, or
        waited for once the backend is closed (its loop is ending)."""
        cgroup.kill()
        with contextlib.suppress(OSError):
            if cgroup.remove():
                return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if self._closed or loop is None:
            with contextlib.suppress(OSError):
                cgroup.remove_once_empty_now()
            return
        emptying = loop.create_task(cgroup.remove_once_empty())
        self._emptying[emptying] = cgroup
        emptying.add_done_callback(self._emptied)

    def _emptied(self, emptying: asyncio.Task[bool]) -> None:
        self._emptying.pop(emptying, None)
        if not emptying.cancelled() and emptying.exception() is not None:
            log.warning("could not remove a cgroup: %s", emptying.exception())

    def _remove_code_parent_once_closed(self) -> None:
        """This server's directory of code points, once the backend is closed and its last
        runtime started ahead is released (some are released after `close`)."""
        if self._closed and self._templates is not None:
            with contextlib.suppress(OSError):
                self._code_points.rmdir()

    def _assign(self, entry: Prestarted, spec: SandboxSpec) -> NamespaceSandbox | None:
        """The environment `entry` becomes once it has the function, or None if it could
        not take it: `entry` is discarded, and its network slot, where the environment's
        Runtime API listens already, is kept for a fresh start."""
        mapping = self._mapping(spec)
        environment = {
            name: mounts.inside_paths(value, mapping) for name, value in spec.environment.items()
        }
        try:
            entry.assign(spec.task_root, spec.opt_dir, environment)
        except BaseException as error:
            # Out of every list by now: discarded here, or nothing would ever end it.
            slot, entry.slot = entry.slot, None
            self._discard_prestarted(entry)
            if not isinstance(error, OSError):
                if slot is not None and self.network is not None:
                    self.network.discard(slot)
                raise
            if slot is not None:
                self._reserved[spec.scratch_root.name] = slot
            log.warning("a runtime started ahead could not take its function", exc_info=True)
            return None
        channel = spec.runtime_api
        pool = self._prestarted
        assert pool is not None
        if channel is None:
            pool.refill_soon(entry.key)
        else:
            channel.peer_uid = entry.uid if entry.slot is None else None
            if entry.cgroup is not None:
                cap_after_init(channel, entry.cgroup, spec.memory_mb)
            channel.initialized.add_done_callback(lambda _: pool.refill_soon(entry.key))
        return self._adopt(entry)

    def _adopt(self, entry: Prestarted) -> NamespaceSandbox:
        sandbox = NamespaceSandbox(
            entry.process,
            entry.output_fd,
            entry.uid,
            entry.cgroup,
            self._released,
            entry.staging,
            entry.slot,
            entry.code_points,
        )
        self._live.add(sandbox)
        return sandbox

    def _give_up_making(self, held: _Held) -> None:
        """A runtime still being started ahead as the backend closes: ended, and what it
        holds released now, while the network, cgroups and uids are still open (its maker,
        cancelled, only sees that later)."""
        self._making.discard(held)
        if held.made is not None:
            self._discard_prestarted(held.made)
            return
        if held.process is not None:
            held.process.kill()
            held.process.wait()
        # A Python runtime the template is forking joins a cgroup that is killed here, or
        # ends with its template (its parent-death signal).
        self._release_held(held)

    def _discard_prestarted(self, entry: Prestarted) -> None:
        """End a runtime started ahead that will not be used; what it holds is released
        once it is gone, as an environment's is."""
        if entry.discarded:
            return  # by `close`, before its maker saw it cancelled
        entry.discarded = True
        entry.close_assignment()
        sandbox = self._adopt(entry)
        sandbox.kill()
        if self._closed:
            # One whose making ended as the backend closed: the loop that would release it
            # later is stopping, so it is released now.
            sandbox.release_now(time.monotonic() + 5)
        else:
            sandbox.cleanup()

    async def _slot_and_uid(
        self, environment_id: str, network: NetworkPolicy | None
    ) -> tuple[Slot | None, int]:
        """A new environment's network slot (one set aside for it, or one taken now) and
        uid. Without a uid (every block taken, or its lock unwritable) the slot is not
        kept."""
        slot = self._reserved.pop(environment_id, None)
        set_aside = slot is not None
        if slot is None and self.network is not None:
            slot = await self.network.take(network)
        try:
            return slot, self._uids.acquire()
        except BaseException:
            self._abandon_slot(slot, ran_in=set_aside)  # set aside: a runtime ran in it
            raise

    def _abandon_slot(self, slot: Slot | None, ran_in: bool) -> None:
        """A slot no environment came to use: back to the pool if nothing ran in it, else
        retired."""
        if slot is None or self.network is None:
            return
        if ran_in:
            self.network.discard(slot)
        else:
            self.network.give_back(slot)

    def _return_slot(self, slot: Slot, error: BaseException | None) -> None:
        """After a failed start: an executable that could not be exec'd left nothing
        running in the namespace; any other failure (a template's child may have entered
        it) retires the namespace."""
        self._abandon_slot(slot, ran_in=not isinstance(error, EntrypointError))

    def _spawn(
        self,
        argv: list[str],
        environment: dict[str, str],
        output_fd: int,
        enter: Callable[[], None],
    ) -> subprocess.Popen[bytes]:
        try:
            return self._spawner.spawn(argv, environment, output_fd, enter)
        except OSError as error:
            failure = exec_failure(error, argv)
            if failure is None:
                raise
            raise failure from error

    def use_templates(self, templates: Templates) -> None:
        """Start Python environments by forking pre-initialised templates (see `zygote`),
        and keep Python and Node runtimes started ahead (see `prestarted`). The templates' ready
        children build the common part of the root on one staging directory of this
        backend's (each mounts on it in a mount namespace of its own, so one serves them
        all)."""
        self._templates = templates
        # In the lock directory (/run/lamina): not aged away as an empty /tmp directory
        # may be, which would take the mount on it from every ready child.
        self._lock_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(self._lock_dir)
        self._ready_staging = tempfile.mkdtemp(
            prefix=f"ready-root-{os.getpid()}-", dir=self._lock_dir
        )
        templates.ready_root = ReadyRoot(self._ready_staging, self._system, mounts.HOSTNAME)
        # Runtimes fully in their sandbox before their function is known.
        code_parent = self._lock_dir / "prestarted"
        try:
            prestarted.remove_stale_code_points(code_parent)
            self._code_points = prestarted.prepare_code_parent(code_parent)
        except OSError as error:
            log.warning("runtimes are not started ahead: %s", error)
            return
        # One thread forks them: a runtime's parent-death signal follows the thread that
        # forked it, which lives as long as this backend.
        self._prestart_thread = ThreadPoolExecutor(1, thread_name_prefix="lamina-prestart")
        self._prestarted = PrestartPool(self._make_prestarted, self._discard_prestarted)

    async def _fork_from_template(
        self,
        interpreter: str,
        environment: dict[str, str],
        output_fd: int,
        plan: mounts.RootPlan,
        uid: int,
        cgroup: EnvironmentCgroup | None,
        memory_mb: int,
        slot: Slot | None,
    ) -> TemplateChild:
        """The same sandbox as `enter_sandbox` builds, entered by a child of the template."""
        assert self._templates is not None
        template = await self._templates.get(interpreter)
        return await template.fork(
            environment,
            mounts.TASK_ROOT,
            limits.namespace_limits(None if cgroup else memory_mb),
            output_fd,
            _template_sandbox(plan, uid, cgroup, slot),
            slot.fd if slot is not None else None,
        )

    # ------------------------------------------------------------------- SnapStart

    async def start_snapshot(
        self, spec: SandboxSpec, script: Path, control_fd: int, output_fd: int, forks: int
    ) -> tuple[subprocess.Popen[bytes], SnapshotIsolation, list[tuple[str, str]]]:
        """Start a SnapStart snapshot process (see `lamina.sandbox.snapshots`): isolated as a
        fresh environment is, as a uid of its own, with `forks` more uids for the user
        namespace it then makes; returns it, what it holds, and the host-to-inside paths."""
        slot = await self.network.take(spec.network) if self.network is not None else None
        try:
            uids = self._uids.acquire_run(forks + 1)
        except BaseException:
            self._abandon_slot(slot, ran_in=False)
            raise
        cgroup: EnvironmentCgroup | None = None
        listener: socket.socket | None = None

        def release() -> None:
            if cgroup is not None:
                cgroup.kill()
                with contextlib.suppress(OSError):
                    cgroup.remove()
            for uid in uids:
                self._uids.release(uid)
            if slot is not None and self.network is not None:
                self.network.discard(slot)
            with contextlib.suppress(OSError):
                spec.scratch_root.rmdir()

        try:
            if slot is not None and self.network is not None:
                # 127.0.0.1:9001 in the snapshot's network, for its container credentials.
                listener = self.network.listen(slot)
            if self._cgroups is not None:
                limits_wanted = Limits(spec.memory_mb * 1024 * 1024, spec.memory_mb)
                cgroup = self._cgroups.create(f"snap-{spec.scratch_root.name}", limits_wanted)
            spec.scratch_root.mkdir(parents=True, exist_ok=True)
            mapping = self._mapping(spec)
            interpreter = spec.command[0]
            argv = [interpreter, "-u", mounts.inside_paths(str(script), mapping), str(control_fd)]
            argv.append("--userns")
            environment = {
                key: mounts.inside_paths(v, mapping) for key, v in spec.environment.items()
            }
            plan = self._plan(spec, interpreter, uids[0])
            procs = cgroup.procs_files if cgroup else []
            enter = enter_sandbox(
                plan, uids[0], procs, spec.memory_mb, slot.fd if slot is not None else -1
            )
            process = spawn_snapshot(argv, environment, output_fd, control_fd, enter)
        except BaseException:
            if listener is not None:
                listener.close()
            release()
            raise
        free = list(range(forks, 0, -1))
        isolation = SnapshotIsolation(uids, cgroup, release, free=free, listener=listener)
        return process, isolation, mapping

    def restored_cgroup(self, environment_id: str, memory_mb: int) -> EnvironmentCgroup | None:
        """The cgroup of an environment restored from a snapshot (None without cgroups)."""
        if self._cgroups is None:
            return None
        return self._cgroups.create(environment_id, Limits(memory_mb * 1024 * 1024, memory_mb))

    def _released(self, sandbox: NamespaceSandbox) -> None:
        self._live.discard(sandbox)
        if sandbox.code_points is not None:
            prestarted.remove_code_points(sandbox.code_points)
            self._remove_code_parent_once_closed()
        self._uids.release(sandbox.uid)
        if sandbox.slot is not None and self.network is not None:
            self.network.give_back(sandbox.slot)

    def close(self) -> None:
        """Stop every environment still running and remove this server's cgroups."""
        self._closed = True
        deadline = time.monotonic() + 5
        with stop_step("runtimes started ahead, and spawns under way"):
            if self._prestarted is not None:
                self._prestarted.close()
            # A spawn under way finishes first.
            self._spawn_threads.shutdown(wait=True)
            if self._prestart_thread is not None:
                self._prestart_thread.shutdown(wait=True)
            for held in list(self._making):
                self._give_up_making(held)
            for entry in self._assigned.values():
                self._discard_prestarted(entry)
            self._assigned.clear()
        with stop_step(f"{len(self._live)} environments"):
            for sandbox in list(self._live):
                sandbox.kill()
            for sandbox in list(self._live):
                sandbox.release_now(deadline)
        for emptying, cgroup in list(self._emptying.items()):
            emptying.cancel()
            with contextlib.suppress(OSError):
                cgroup.remove_once_empty_now()
        self._emptying.clear()
        if self._cgroups is not None:
            self._cgroups.close()
        if self.network is not None:
            with stop_step("the network namespaces"):
                for slot in self._reserved.values():
                    self.network.discard(slot)
                self._reserved.clear()
                self.network.close()
        self._uids.close()
        self._spawner.close()
        if self._templates is not None:
            with stop_step("the templates"):
                self._templates.close()  # after the sandboxes: their children are gone by now
            with contextlib.suppress(OSError):
                os.rmdir(self._ready_staging)
            with contextlib.suppress(OSError):
                self._code_points.rmdir()

    @staticmethod
    def _mapping(spec: SandboxSpec) -> list[tuple[str, str]]:
        mapping = [(str(spec.task_root), mounts.TASK_ROOT), (str(RUNTIMES_DIR), mounts.RUNTIME_DIR)]
        if spec.opt_dir is not None:
            mapping.append((str(spec.opt_dir), mounts.OPT_ROOT))
        return sorted(mapping, key=lambda pair: -len(pair[0]))

    def _plan(self, spec: SandboxSpec, executable: str, uid: int) -> mounts.RootPlan:
        expose = list(self._resolver)
        if executable.startswith("/") and not executable.startswith(
            (mounts.TASK_ROOT + "/", mounts.OPT_ROOT + "/", mounts.RUNTIME_DIR + "/")
        ):
            if executable not in self._installs:
                self._installs[executable] = _installations(executable)
            expose += self._installs[executable]
        hidden = [
            *self._hidden,
            _resolved(spec.task_root.parent.parent),
            _resolved(spec.scratch_root.parent),
        ]
        return mounts.RootPlan(
            staging=str(spec.scratch_root),
            task_root=str(spec.task_root),
            opt_dir=str(spec.opt_dir) if spec.opt_dir else None,
            runtime_dir=str(RUNTIMES_DIR),
            tmp_bytes=spec.ephemeral_mb * 1024 * 1024,
            system=self._system,
            expose=tuple(dict.fromkeys(expose)),
            hide=tuple(dict.fromkeys(hidden)),
            passwd=self._passwd.with_user(uid),
            file_systems=shares.plan_file_systems(spec.file_systems, uid),
            resolv_conf=_resolv_conf(spec, self._namespace_resolvers),
        )

    # -------------------------------------------------------------------- describe

    def describe(self) -> list[tuple[str, bool, str]]:
        cgroups = self._cgroups
        active = set(cgroups.active) if cgroups else set()
        missing = cgroups.unavailable if cgroups else {}

        def why(controller: str, detail: str) -> str:
            if controller in active:
                return detail
            return missing.get(controller, self._cgroup_reason)

        version = f"cgroup v{cgroups.version}" if cgroups else "no cgroups"
        return [
            (
                "mount namespace: read-only root of host system directories, code at "
                "/var/task, layers at /opt; the data directory and other code are absent",
                True,
                "pivot_root into a tmpfs of read-only binds",
            ),
            ("PID, IPC, UTS and cgroup namespaces", True, "the runtime is process 1"),
            ("private /tmp sized to EphemeralStorage", True, "tmpfs; counts towards memory"),
            (
                f"one uid per environment, named {USER_NAME}; its Runtime API "
                + (
                    "listens inside its network namespace"
                    if self.network is not None
                    else "admits only that uid"
                ),
                True,
                f"uids from {UID_BASE}",
            ),
            (
                "memory limit (MemorySize, no swap), measured peak, OOM kills reported",
                "memory" in active,
                why("memory", version),
            ),
            (
                "CPU: one vCPU per 1,769 MB of memory, applied once init is done",
                "cpu" in active,
                why("cpu", version),
            ),
            (
                "cold starts move their runtime into its cgroup without waiting for the "
                "kernel's RCU grace period",
                bool(cgroups and cgroups.moves[0]),
                cgroups.moves[1] if cgroups else self._cgroup_reason,
            ),
            (
                f"{MAX_PIDS} processes and threads",
                True,
                why("pids", version) if "pids" in active else "RLIMIT_NPROC of the uid",
            ),
            self.network.describe()
            if self.network is not None
            else (
                "network namespace per environment",
                False,
                f"{self.network_reason}; functions share the host's network and can reach "
                "its loopback services",
            ),
        ]


class HostPasswd:
    """The host's /etc/passwd with the environment's user added, re-read only when it changes.

    Code looks its user up by uid (`getpass.getuser()`, `id -un`); the environment's uid
    resolves to `USER_NAME`, as on AWS, whose home directory does not exist either. No group
    entry is added: on AWS the user's group has no name (`id` prints `gid=990`).
    """

    def __init__(self, path: str = "/etc/passwd") -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._lines = ""

    def with_user(self, uid: int) -> str:
        self._refresh()
        return f"{self._lines}{USER_NAME}:x:{uid}:{uid}::/home/{USER_NAME}:/sbin/nologin\n"

    def _refresh(self) -> None:
        try:
            status = os.stat(self._path)
        except OSError:
            self._stamp, self._lines = None, ""
            return
        stamp = (status.st_mtime_ns, status.st_size)
        if stamp == self._stamp:
            return
        try:
            with open(self._path, encoding="utf-8", errors="replace") as host:
                lines = host.read().splitlines()
        except OSError:
            lines = []
        # A host account of the same name would shadow the environment's.
        kept = [line for line in lines if not line.startswith(USER_NAME + ":")]
        self._stamp, self._lines = stamp, "".join(line + "\n" for line in kept)


def _template_sandbox(
    plan: mounts.RootPlan, uid: int, cgroup: EnvironmentCgroup | None, slot: Slot | None
) -> dict[str, Any]:
    """What a template's child needs to enter the sandbox `enter_sandbox` builds."""
    return {
        "procs_files": cgroup.procs_files if cgroup else [],
        # orjson writes the dataclass as an object itself (asdict's deep copy cost a cold
        # start ~0.3 ms).
        "plan": plan,
        "uid": uid,
        # Its descriptor travels with the request; the child checks that it arrived.
        "netns": slot is not None,
    }


@dataclass(eq=False)
class _Held:
    """What a runtime being started ahead holds, until it is a `Prestarted`."""

    slot: Slot | None
    staging: Path
    uid: int = -1
    cgroup: EnvironmentCgroup | None = None
    code_points: Path | None = None
    output_read: int = -1
    output_write: int = -1
    assignment_read: int = -1
    assignment_write: int = -1
    waiting_read: int = -1
    waiting_write: int = -1
    # A Node runtime's process, once spawned (set on the spawning thread).
    process: subprocess.Popen[bytes] | None = None
    # What it became, once forked; or whether it was given up before.
    made: Prestarted | None = None
    released: bool = False

    def pipes(self) -> None:
        self.output_read, self.output_write = os.pipe()
        self.assignment_read, self.assignment_write = os.pipe()
        self.waiting_read, self.waiting_write = os.pipe()

    def close_pipes(self) -> None:
        for name in (
            "output_read",
            "output_write",
            "assignment_read",
            "assignment_write",
            "waiting_read",
            "waiting_write",
        ):
            descriptor = getattr(self, name)
            if descriptor >= 0:
                with contextlib.suppress(OSError):
                    os.close(descriptor)
                setattr(self, name, -1)

    def entry(self, key: PrestartKey, process: Process) -> Prestarted:
        """The runtime, once forked: the child's ends of its pipes are closed here."""
        for name in ("output_write", "assignment_read", "waiting_write"):
            os.close(getattr(self, name))
            setattr(self, name, -1)
        os.set_blocking(self.output_read, False)
        assert self.code_points is not None
        self.made = Prestarted(
            key,
            process,
            self.output_read,
            self.assignment_write,
            self.uid,
            self.cgroup,
            self.slot,
            self.staging,
            self.code_points,
        )
        return self.made


async def _until_waiting(waiting_fd: int) -> None:
    """Until a runtime started ahead says it waits for its assignment (its bootstrap loaded
    and warmed up); raises if it ends first, or takes longer than START_TIMEOUT_S."""
    loop = asyncio.get_running_loop()
    said: asyncio.Future[bytes] = loop.create_future()

    def readable() -> None:
        if not said.done():
            try:
                said.set_result(os.read(waiting_fd, 64))
            except OSError as error:
                said.set_exception(error)

    loop.add_reader(waiting_fd, readable)
    try:
        word = await asyncio.wait_for(said, prestarted.START_TIMEOUT_S)
    finally:
        loop.remove_reader(waiting_fd)
        os.close(waiting_fd)
    if word != b"waiting":
        raise OSError("a runtime started ahead ended before it waited for a function")


def enter_sandbox(
    plan: mounts.RootPlan, uid: int, procs_files: list[str], memory_mb: int, netns_fd: int = -1
) -> Callable[[], None]:
    """What the child runs between fork and exec: it is process 1 of its PID namespace."""
    # AWS's limits exactly: the cgroup enforces memory (RLIMIT_DATA only stands in for a
    # missing one), the sized tmpfs /tmp, and the uid is the environment's own, so
    # RLIMIT_NPROC caps this environment's processes alone.
    rlimits = limits.namespace_limits(None if procs_files else memory_mb)
    server = _own_pidfd()

    def enter() -> None:
        try:
            os.setsid()
            # If the server dies, so does the environment (while it is set up, first).
            mounts.prctl(mounts.PR_SET_PDEATHSIG, signal.SIGKILL)
            for name in procs_files:
                with open(name, "w", encoding="ascii") as procs:
                    procs.write(str(os.getpid()))
            if netns_fd >= 0:
                mounts.setns(netns_fd, CLONE_NEWNET)
            mounts.build_root(plan)
            limits.apply(rlimits)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            mounts.prctl(mounts.PR_SET_NO_NEW_PRIVS, 1)
            # Changing the uid cleared the parent-death signal (prctl(2)): set it again, for
            # good, and end now if the server ended before it was.
            mounts.prctl(mounts.PR_SET_PDEATHSIG, signal.SIGKILL)
            if server >= 0:
                ended = select.poll()
                ended.register(server, select.POLLIN)
                if ended.poll(0):
                    os._exit(1)
        except BaseException as error:
            os.write(2, f"lamina: could not isolate the environment: {error}\n".encode())
            raise

    return enter


class _ClosedWhileStarting(RuntimeError):
    def __init__(self) -> None:
        super().__init__("the sandbox backend closed while the runtime started")


_OWN_PIDFD: dict[int, int] = {}


def _own_pidfd() -> int:
    """A pidfd of this process, opened once per process (-1 before Linux 5.3): readable
    once it has ended, which a child can check after setting its parent-death signal."""
    pid = os.getpid()
    if pid not in _OWN_PIDFD:
        try:
            _OWN_PIDFD[pid] = os.pidfd_open(pid)
        except (AttributeError, OSError):
            _OWN_PIDFD[pid] = -1
    return _OWN_PIDFD[pid]


class PidNamespaceSpawner:
    """Forks children as process 1 of a new PID namespace each.

    unshare(CLONE_NEWPID) changes the namespace of the calling thread's future children only,
    so the thread enters a fresh one just for this fork and returns to its own right after.
    """

    def __init__(self) -> None:
        self._own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)

    def spawn(
        self,
        argv: Sequence[str],
        environment: dict[str, str],
        output_fd: int,
        enter: Callable[[], None],
        pass_fds: Sequence[int] = (),
    ) -> subprocess.Popen[bytes]:
        mounts.unshare(mounts.CLONE_NEWPID)
        try:
            return subprocess.Popen(
                argv,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=output_fd,
                stderr=output_fd,
                pass_fds=pass_fds,
                # The child runs only system calls and no locks the fork could have copied held.
                preexec_fn=enter,  # noqa: PLW1509
            )
        finally:
            mounts.setns(self._own, mounts.CLONE_NEWPID)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._own)


def _watch_exit(
    process: subprocess.Popen[bytes] | TemplateChild, exited: asyncio.Future[int]
) -> None:
    """Resolve `exited` with the exit status, without a thread: a pidfd polls readable."""
    if isinstance(process, TemplateChild):
        # Its template reaps it and reports the status over the control socket.
        def relay(done: asyncio.Future[int]) -> None:
            if not exited.done():
                exited.set_result(done.result())

        process.exited.add_done_callback(relay)
        return
    loop = asyncio.get_running_loop()
    try:
        pidfd = os.pidfd_open(process.pid)
    except OSError:
        # Kernels before 5.3: a thread waits instead.
        waiting = loop.run_in_executor(None, process.wait)

        def settle(done: asyncio.Future[int]) -> None:
            if not exited.done():
                exited.set_result(done.result())

        waiting.add_done_callback(settle)
        return

    def reap() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        if not exited.done():
            exited.set_result(process.wait())

    loop.add_reader(pidfd, reap)


def _end_what_was_started(
    starting: asyncio.Future[Process],
    fds: Sequence[int],
    then: Callable[[], None],
) -> None:
    """A spawn or fork its start stopped waiting for, now done: the runtime (if it came to
    be) is killed, and `then` runs once it has ended, the kernel ending every process of its
    PID namespace with it."""
    for fd in fds:
        os.close(fd)
    if starting.cancelled() or starting.exception() is not None:
        then()
        return
    process = starting.result()
    if isinstance(process, TemplateChild):
        if process.exited.done():
            # Already reaped by its template (which `close` ended): the pid may be another's.
            then()
            return
        process.kill()
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(process.pid, signal.SIGKILL)
    ended: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    _watch_exit(process, ended)
    ended.add_done_callback(lambda _: then())


def _lock_dir() -> Path:
    run = Path("/run")
    if os.access(run, os.W_OK):
        return run / "lamina"
    return Path(tempfile.gettempdir()) / "lamina-uids"


def probe() -> str | None:
    """None when this host can run the backend, else why not."""
    if not sys.platform.startswith("linux"):
        return f"namespaces are a Linux feature (this is {sys.platform})"
    if os.geteuid() != 0:
        return (
            "the namespace backend needs root (it gives every environment its own uid); "
            "unprivileged user namespaces are not supported yet"
        )
    true = shutil.which("true", path="/usr/bin:/bin")
    if true is None:
        return "`true` was not found in /usr/bin or /bin"
    with tempfile.TemporaryDirectory(prefix="lamina-probe-") as scratch:
        stage = Path(scratch) / "root"
        task = Path(scratch) / "task"
        stage.mkdir()
        task.mkdir()
        plan = mounts.RootPlan(
            staging=str(stage),
            task_root=str(task),
            opt_dir=None,
            runtime_dir=str(RUNTIMES_DIR),
            tmp_bytes=1024 * 1024,
            system=mounts.system_layout(),
        )
        read_fd, write_fd = os.pipe()
        spawner = PidNamespaceSpawner()
        try:
            process = spawner.spawn(
                [true], {}, write_fd, enter_sandbox(plan, UID_BASE - 1, [], 128)
            )
            status: int | str = process.wait(10)
        except (OSError, subprocess.SubprocessError) as error:
            status = f"{error}"
        finally:
            spawner.close()
            os.close(write_fd)
            with os.fdopen(read_fd, "rb") as output:
                detail = output.read().decode(errors="replace").strip()
    if status != 0:
        return f"starting a sandbox failed: {detail or status}"
    return None
