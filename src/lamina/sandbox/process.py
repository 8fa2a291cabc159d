"""The portable backend: a plain process group limited by rlimits.

Used where namespaces and cgroups are unavailable (macOS, locked-down containers). It cannot
hide the host's files from the function; Lamina says so at start-up and in `lamina doctor`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lamina.sandbox import limits
from lamina.sandbox.api import SandboxSpec, exec_failure


class PeakMemory:
    """A process's high-water mark (VmHWM), read once per invocation, kept after it exits.

    The status file stays open and is re-read with pread: cheaper than opening it on every
    invocation, which sits on the hot path.
    """

    def __init__(self, pid: int) -> None:
        self._peak_kib = 0
        try:
            self._fd: int | None = os.open(f"/proc/{pid}/status", os.O_RDONLY)
        except OSError:
            self._fd = None

    def bytes(self) -> int | None:
        if self._fd is not None:
            try:
                status = os.pread(self._fd, 4096, 0)
                start = status.index(b"VmHWM:") + 6
                kib = int(status[start : status.index(b"kB", start)])
                self._peak_kib = max(self._peak_kib, kib)
            except (OSError, ValueError):
                pass
        return self._peak_kib * 1024 if self._peak_kib else None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ProcessGroupSandbox:
    """What the process and zygote sandboxes share: a process group limited by rlimits,
    its output pipe and its scratch directory. Subclasses say how to wait for its exit."""

    def __init__(self, pid: int, output_fd: int, tmp_dir: Path) -> None:
        self.pid = pid
        self.output_fd = output_fd
        self.tmp_dir = tmp_dir
        self._peak = PeakMemory(pid)

    def kill(self) -> None:
        # A process that called setsid() has left the group, but not the tree: stop the
        # whole tree first (so nothing forks past us), then kill it and the group.
        stopped = _stop_tree(self.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def max_memory_bytes(self) -> int | None:
        return self._peak.bytes()

    def oom_killed(self) -> bool:
        # RLIMIT_DATA makes allocations fail (MemoryError) rather than the kernel killing.
        return False

    def cleanup(self) -> None:
        self._peak.close()
        with contextlib.suppress(OSError):
            os.close(self.output_fd)
        # What the function left in its /tmp can be many files (up to its ephemeral storage,
        # 10 GiB): removed on a thread of its own, not the event loop's, nor one that cold
        # starts wait for.
        try:
            _REMOVALS.submit(_remove_scratch, self.tmp_dir)
        except RuntimeError:  # the interpreter is shutting down
            _remove_scratch(self.tmp_dir)


_REMOVALS = ThreadPoolExecutor(1, thread_name_prefix="lamina-scratch-removal")


def _remove_scratch(tmp_dir: Path) -> None:
    shutil.rmtree(tmp_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.rmdir(tmp_dir.parent)  # the environment's scratch root, empty by now


class ProcessSandbox(ProcessGroupSandbox):
    def __init__(self, process: asyncio.subprocess.Process, output_fd: int, tmp_dir: Path) -> None:
        super().__init__(process.pid, output_fd, tmp_dir)
        self._process = process

    async def wait(self) -> int:
        return await self._process.wait()


def loopback_listener() -> socket.socket:
    """A Runtime API socket on the host's loopback, on a port of the kernel's choosing: for
    backends whose environments share the host's network."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
    except BaseException:
        listener.close()
        raise
    return listener


class ProcessBackend:
    """Process group + rlimits; no filesystem isolation."""

    name = "process"

    async def listen(self, spec: SandboxSpec) -> socket.socket:
        return loopback_listener()

    def abandon(self, spec: SandboxSpec) -> None:
        """Nothing to give back: the listener was all `listen` made."""

    async def start(self, spec: SandboxSpec) -> ProcessSandbox:
        tmp_dir = spec.scratch_root / "tmp"
        tmp_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        environment = {**spec.environment, "TMPDIR": str(tmp_dir), "LAMINA_TMP_DIR": str(tmp_dir)}
        # RLIMIT_DATA caps what the runtime can allocate; RLIMIT_AS would also count the
        # large address-space reservations V8 and Go make up front and stop them starting.
        chosen = limits.process_limits(spec.memory_mb, spec.ephemeral_mb)

        def limit() -> None:
            os.setsid()
            limits.apply(chosen)

        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        try:
            process = await asyncio.create_subprocess_exec(
                *spec.command,
                cwd=spec.task_root,
                env=environment,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                preexec_fn=limit,
            )
        except BaseException as error:
            os.close(read_fd)
            if isinstance(error, OSError) and (failure := exec_failure(error, spec.command)):
                raise failure from error
            raise
        finally:
            os.close(write_fd)
        return ProcessSandbox(process, read_fd, tmp_dir)

    def close(self) -> None:
        """Nothing to release: environments are stopped by their pool."""

    def describe(self) -> list[tuple[str, bool, str]]:
        return [
            ("process group + rlimits (memory, files, file size)", True, "portable fallback"),
            ("filesystem isolation", False, "the process backend cannot hide host files"),
            ("memory cgroup", False, f"not used by the process backend on {sys.platform}"),
            (
                "network isolation",
                False,
                "functions share the host's network: they can reach its loopback services "
                "(databases, the Lamina API) and every address the host can",
            ),
        ]


def child_pids(pid: int) -> list[int]:
    """The direct children of every thread of `pid`, as /proc lists them."""
    children: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return children
    for task in tasks:
        with (
            contextlib.suppress(OSError, ValueError),
            open(f"/proc/{pid}/task/{task}/children") as listing,
        ):
            children.extend(int(child) for child in listing.read().split())
    return children


def _stop_tree(root: int, passes: int = 4) -> list[int]:
    """SIGSTOP every descendant of `root` and return them. A pass finds what forked while
    the previous one stopped its parents; a tree still growing after `passes` has only
    forked from processes already stopped, which cannot fork again."""
    stopped: set[int] = set()
    for _ in range(passes):
        pending, found = [root], []
        while pending:
            for child in child_pids(pending.pop()):
                found.append(child)
                pending.append(child)
        new = [pid for pid in found if pid not in stopped]
        if not new:
            break
        for pid in new:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGSTOP)
        stopped.update(new)
    return list(stopped)
