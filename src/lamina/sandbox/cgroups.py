"""Control groups for execution environments: memory, CPU and process limits, v1 or v2.

Each Lamina server owns one group per controller (`lamina-<pid>`) under its own cgroup, and one
child group per environment below it. The environment's first process joins its group before
it runs any function code, so nothing the function starts can escape the limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from lamina.sandbox import cgroup_moves
from lamina.sandbox.cgroup_mounts import cgroup_mounts

log = logging.getLogger("lamina.sandbox")

# Waits between tries to remove a group whose processes were killed: it stays busy until its
# last process has exited, which can take a moment after SIGKILL.
_EMPTYING_DELAYS = (0.005, 0.02, 0.1, 0.5, 1.0, 2.0)
_EMPTYING_WAIT_S = sum(_EMPTYING_DELAYS)

# 1,769 MB of memory buys one vCPU, as on AWS Lambda.
MB_PER_VCPU = 1769
# A short period keeps each function's share while bounding how long a throttled runtime
# waits (at most one period): 20 ms still gives 128 MB its 7.2% above the kernel's 1 ms
# minimum quota.
CPU_PERIOD_US = 20_000
# Lambda's limit on processes and threads per environment.
MAX_PIDS = 1024
CONTROLLERS = ("memory", "cpu", "pids")
# The setting that leaves the kernel's cgroup2 flags as the host set them.
FAST_MOVES_OFF = "LAMINA_CGROUP_FAST_MOVES=off"
# All environments together weigh the default weight divided by this, against each process
# beside the server (its event loop among them): when the CPUs are busy the data plane that
# serves every call goes first, and a runtime woken by an event no longer preempts the loop
# that sent it (at concurrency 8 on 2 cores, +7 to +22% invocations a second in paired runs;
# docs/benchmarks.md). A function's own cap and its share among functions do not change,
# nor anything while a CPU is idle.
ENVIRONMENTS_WEIGHT_DIVISOR = 4


def cpu_quota_us(memory_mb: int, period_us: int = CPU_PERIOD_US) -> int:
    """CPU time per period for a function of `memory_mb` (the kernel's minimum is 1 ms)."""
    return max(1000, period_us * memory_mb // MB_PER_VCPU)


# No O_CREAT: a control file this kernel lacks (memory.memsw.* without swap accounting,
# memory.oom.group before 4.19) is then FileNotFoundError, which `apply` skips; with it, the
# cgroup filesystem answers EACCES instead.
_WRITE_FLAGS = os.O_WRONLY | os.O_CLOEXEC


def _write(path: Path, value: str | int) -> None:
    # One write(2) on a descriptor: half the CPU of a buffered text file, and a cold start
    # writes about seven of these.
    fd = os.open(path, _WRITE_FLAGS)
    try:
        os.write(fd, str(value).encode("ascii"))
    finally:
        os.close(fd)


def _read(path: Path) -> str:
    with open(path, encoding="ascii") as handle:
        return handle.read()


def _keyed(text: str) -> dict[str, int]:
    """`key value` lines (memory.events, memory.oom_control) as a dict."""
    values = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            values[key] = int(value)
    return values


@dataclass(frozen=True)
class Limits:
    """What one environment may use."""

    memory_bytes: int
    memory_mb: int
    pids: int = MAX_PIDS


class EnvironmentCgroup:
    """One environment's group(s): limits, measurements, and killing everything inside."""

    def __init__(self, version: int, paths: dict[str, Path]) -> None:
        self.version = version
        # controller -> directory (v2: every controller maps to the same directory)
        self._paths = paths
        self._peak = 0
        self._peak_fd: int | None = None

    @property
    def procs_files(self) -> list[str]:
        """Files a process writes its pid into to join the group (one per hierarchy)."""
        return [str(path / "cgroup.procs") for path in dict.fromkeys(self._paths.values())]

    def _file(self, controller: str, name: str) -> Path | None:
        path = self._paths.get(controller)
        return None if path is None else path / name

    def apply(self, limits: Limits) -> None:
        """Memory and process limits, from the start (CPU is capped after init: `cpu_cap`)."""
        memory = self._paths.get("memory")
        pids = self._paths.get("pids")
        if self.version == 1:
            if memory is not None:
                _write(memory / "memory.limit_in_bytes", limits.memory_bytes)
                # Equal memory+swap and memory limits: the group cannot swap.
                try:
                    _write(memory / "memory.memsw.limit_in_bytes", limits.memory_bytes)
                except FileNotFoundError:
                    with contextlib.suppress(OSError):
                        _write(memory / "memory.swappiness", 0)
        elif memory is not None:
            _write(memory / "memory.max", limits.memory_bytes)
            with contextlib.suppress(FileNotFoundError):
                _write(memory / "memory.swap.max", 0)
            # An out-of-memory kill takes the whole environment: it is discarded anyway.
            with contextlib.suppress(FileNotFoundError):
                _write(memory / "memory.oom.group", 1)
        if pids is not None:
            _write(pids / "pids.max", limits.pids)

    def cap_cpu(self, memory_mb: int) -> None:
        """From now on: a CPU share and a CPU-time quota proportional to memory."""
        cpu = self._paths.get("cpu")
        if cpu is None:
            return
        quota = cpu_quota_us(memory_mb)
        shares = max(2, 1024 * memory_mb // MB_PER_VCPU)
        if self.version == 1:
            _write(cpu / "cpu.shares", shares)
            _write(cpu / "cpu.cfs_period_us", CPU_PERIOD_US)
            _write(cpu / "cpu.cfs_quota_us", quota)
            burst = cpu / "cpu.cfs_burst_us"
        else:
            _write(cpu / "cpu.weight", 1 + (shares - 2) * 9999 // 262142)
            _write(cpu / "cpu.max", f"{quota} {CPU_PERIOD_US}")
            burst = cpu / "cpu.max.burst"
        # Time left unused in quiet periods may be spent later (up to one period's quota):
        # the average stays capped while short bursts, like most invocations, are not stalled.
        with contextlib.suppress(OSError):
            if burst.exists():
                _write(burst, quota)

    def peak_bytes(self) -> int | None:
        """The group's memory high-water mark. Read once per invocation, so the counter file
        stays open and is re-read with pread rather than reopened each time."""
        if self._peak_fd is None:
            self._peak_fd = self._open_peak_counter()
            if self._peak_fd is None:
                return self._peak or None
        with contextlib.suppress(OSError, ValueError):
            self._peak = max(self._peak, int(os.pread(self._peak_fd, 64, 0)))
        return self._peak or None

    def _open_peak_counter(self) -> int | None:
        # Kernels before 5.19 have no memory.peak: sample the current usage instead.
        names = (
            ("memory.max_usage_in_bytes",)
            if self.version == 1
            else (
                "memory.peak",
                "memory.current",
            )
        )
        for name in names:
            path = self._file("memory", name)
            if path is not None:
                with contextlib.suppress(OSError):
                    return os.open(path, os.O_RDONLY)
        return None

    def _close_peak_counter(self) -> None:
        if self._peak_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._peak_fd)
            self._peak_fd = None

    def oom_kills(self) -> int:
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        path = self._file("memory", name)
        if path is None:
            return 0
        try:
            values = _keyed(_read(path))
        except OSError:
            return 0
        return values.get("oom_kill", 0)

    def pids(self) -> list[int]:
        found: set[int] = set()
        for name in self.procs_files:
            with contextlib.suppress(OSError):
                found.update(int(pid) for pid in _read(Path(name)).split())
        return sorted(found)

    def kill(self) -> None:
        """SIGKILL every process in the group."""
        kill_file = self._file("pids", "cgroup.kill") or self._file("memory", "cgroup.kill")
        if self.version == 2 and kill_file is not None and kill_file.exists():
            with contextlib.suppress(OSError):
                _write(kill_file, 1)
                return
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> bool:
        """Remove the group(s); False while processes are still leaving."""
        self._close_peak_counter()
        removed = True
        for path in dict.fromkeys(self._paths.values()):
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError as error:
                if error.errno != errno.EBUSY:
                    raise
                removed = False
        return removed

    async def remove_once_empty(self) -> bool:
        """Kill what is left in the group, and remove it once its processes have exited;
        whether it is gone (a warning says so when it is not)."""
        for delay in _EMPTYING_DELAYS:
            self.kill()
            if self.remove():
                return True
            await asyncio.sleep(delay)
        return self._removed_at_last()

    def remove_once_empty_now(self) -> bool:
        """`remove_once_empty`, waiting in this thread (while the server stops)."""
        deadline = time.monotonic() + _EMPTYING_WAIT_S
        while time.monotonic() < deadline:
            self.kill()
            if self.remove():
                return True
            time.sleep(_EMPTYING_DELAYS[0])
        return self._removed_at_last()

    def _removed_at_last(self) -> bool:
        if self.remove():
            return True
        log.warning(
            "cgroup %s still holds processes after SIGKILL: left in place",
            ", ".join(str(path) for path in dict.fromkeys(self._paths.values())),
        )
        return False


@dataclass(frozen=True)
class Hierarchy:
    """Where each controller lives for this process."""

    version: int
    # controller -> the server's own directory for it (v2: the same directory for all)
    bases: dict[str, Path]


def _own_paths(self_cgroup: str) -> dict[str, str]:
    """controller (or "" for v2) -> this process's cgroup path."""
    paths = {}
    for line in self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            paths[controller] = parts[2]
    return paths


def _join(mount_point: str, mount_root: str, own: str) -> Path:
    relative = own[len(mount_root) :] if own.startswith(mount_root) else own
    return Path(mount_point) / relative.lstrip("/")


def locate(mountinfo: str, self_cgroup: str) -> tuple[Hierarchy | None, str]:
    """Find the hierarchy to use; prefers v1 controllers when the host has them mounted."""
    mounts = cgroup_mounts(mountinfo)
    own = _own_paths(self_cgroup)
    v1: dict[str, Path] = {}
    for root, point, fstype, options in mounts:
        if fstype != "cgroup":
            continue
        for controller in CONTROLLERS:
            if controller in options and controller in own and controller not in v1:
                v1[controller] = _join(point, root, own[controller])
    if v1:
        return Hierarchy(1, v1), "cgroup v1"
    for root, point, fstype, _ in mounts:
        if fstype == "cgroup2" and "" in own:
            base = _join(point, root, own[""])
            return Hierarchy(2, dict.fromkeys(CONTROLLERS, base)), "cgroup v2"
    return None, "no cgroup filesystem is mounted"


class CgroupManager:
    """Creates and removes environment groups under this server's own group."""

    def __init__(self, hierarchy: Hierarchy, name: str) -> None:
        self.version = hierarchy.version
        self._name = name
        self._parents: dict[str, Path] = {}
        # controller -> why it is not used (absent when active)
        self.unavailable: dict[str, str] = {}
        # Whether moving a runtime into its cgroup is fast (`cgroup_moves`), and why.
        self.moves = (False, f"turned off by {FAST_MOVES_OFF}")
        if hierarchy.version == 1:
            self._prepare_v1(hierarchy)
        else:
            self._prepare_v2(hierarchy)

    @property
    def active(self) -> list[str]:
        return [controller for controller in CONTROLLERS if controller in self._parents]

    def _prepare_v1(self, hierarchy: Hierarchy) -> None:
        for controller in CONTROLLERS:
            base = hierarchy.bases.get(controller)
            if base is None:
                self.unavailable[controller] = f"the {controller} controller is not mounted"
                continue
            parent = base / self._name
            try:
                parent.mkdir(exist_ok=True)
            except OSError as error:
                self.unavailable[controller] = f"cannot create {parent}: {error.strerror}"
                continue
            self._parents[controller] = parent
            reap_stale(base)
        if "cpu" in self._parents:
            _weigh(self._parents["cpu"], 1)

    def _prepare_v2(self, hierarchy: Hierarchy) -> None:
        base = hierarchy.bases["memory"]
        try:
            available = set(_read(base / "cgroup.controllers").split())
        except OSError as error:
            for controller in CONTROLLERS:
                self.unavailable[controller] = f"cannot read {base}: {error.strerror}"
            return
        reap_stale(base)
        wanted = [controller for controller in CONTROLLERS if controller in available]
        for controller in CONTROLLERS:
            if controller not in available:
                self.unavailable[controller] = (
                    f"the {controller} controller is not delegated to {base} (cgroup v2)"
                )
        parent = base / self._name
        try:
            parent.mkdir(exist_ok=True)
            # Controllers can only be enabled for the children of a group without processes.
            if wanted:
                _write(base / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
                _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
        except OSError as error:
            for controller in wanted:
                self.unavailable[controller] = (
                    f"cannot enable {controller} below {base}: {error.strerror} (run Lamina "
                    "in a cgroup of its own, e.g. systemd-run --scope -p Delegate=yes)"
                )
            wanted = []
        for controller in wanted:
            self._parents[controller] = parent
        if "cpu" in self._parents:
            _weigh(parent, 2)

    def create(self, environment_id: str, limits: Limits) -> EnvironmentCgroup:
        paths: dict[str, Path] = {}
        try:
            for controller, parent in self._parents.items():
                path = parent / environment_id
                if path not in paths.values():
                    path.mkdir(exist_ok=True)
                paths[controller] = path
            group = EnvironmentCgroup(self.version, paths)
            group.apply(limits)
        except BaseException:
            for path in dict.fromkeys(paths.values()):
                with contextlib.suppress(OSError):
                    path.rmdir()
            raise
        return group

    def close(self) -> None:
        for parent in dict.fromkeys(self._parents.values()):
            with contextlib.suppress(OSError):
                parent.rmdir()


def _weigh(parent: Path, version: int) -> None:
    """Give the environments' parent group its weight (see ENVIRONMENTS_WEIGHT_DIVISOR,
    of the defaults: v1's 1024 shares, v2's weight of 100); a host that refuses keeps the
    default."""
    try:
        if version == 1:
            _write(parent / "cpu.shares", 1024 // ENVIRONMENTS_WEIGHT_DIVISOR)
        else:
            _write(parent / "cpu.weight", 100 // ENVIRONMENTS_WEIGHT_DIVISOR)
    except OSError as error:
        log.warning("cgroups: the environments' CPU weight stays the default: %s", error)


def reap_stale(base: Path) -> None:
    """Remove the empty groups Lamina servers that are gone left behind.

    Only empty groups are removed (rmdir refuses the others): a server in another PID
    namespace may look dead from here while its environments run.
    """
    with contextlib.suppress(OSError):
        for entry in base.iterdir():
            owner = entry.name.removeprefix("lamina-")
            if owner == entry.name or not owner.isdigit() or Path(f"/proc/{owner}").exists():
                continue
            for child in entry.iterdir():
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()
            with contextlib.suppress(OSError):
                entry.rmdir()


def open_manager(
    name: str | None = None, fast_moves: bool | None = True
) -> tuple[CgroupManager | None, str]:
    """The manager for this host, or None and why not. `fast_moves` sets the kernel's
    cgroup2 `favordynmods` flag (see `cgroup_moves`); False leaves it as the operator
    asked; None only reports whether it is set (`lamina doctor` changes nothing)."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
        self_cgroup = Path("/proc/self/cgroup").read_text()
    except OSError as error:
        return None, f"cannot read /proc: {error.strerror}"
    hierarchy, why = locate(mountinfo, self_cgroup)
    if hierarchy is None:
        return None, why
    manager = CgroupManager(hierarchy, name or f"lamina-{os.getpid()}")
    if not manager.active:
        return None, "; ".join(sorted(set(manager.unavailable.values())))
    if fast_moves is None:
        manager.moves = cgroup_moves.moves_state(mountinfo)
    elif fast_moves:
        manager.moves = cgroup_moves.favour_moves(mountinfo)
        if manager.moves[0]:
            log.info("cgroups: fast moves into environment cgroups (%s)", manager.moves[1])
    return manager, why
