"""SnapStart for Python: a published version's init runs once, its environments are forks.

When a version with `SnapStart.ApplyOn=PublishedVersions` is published it stays Pending while
its snapshot is made here: the snapshot process (`lamina.sandbox.snapshots`) imports the
handler's module and runs the before-snapshot hooks, writing INIT_START, the init's output
and INIT_REPORT to a log stream of the version. The version then turns Active (or Failed,
with the init's error). Its environments are restored from that process: RESTORE_START and
RESTORE_REPORT, `AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`, and the first REPORT carries
`Restore Duration` and `Billed Restore Duration`. `$LATEST` and versions without the setting
never run from a snapshot.

Snapshots live in this process: after a restart (or on another node of a cluster) a version's
first invocation answers SnapStartNotReadyException while its snapshot is made again, as
Lambda answers for a version whose snapshot it dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from lamina.control.states import (
    INTERNAL_ERROR,
    SNAPSTART_NOT_READY,
    ActivationFailed,
    snap_started,
)
from lamina.errors import SnapStartNotReady
from lamina.invoke.container_credentials import ContainerCredentials
from lamina.invoke.events import EnvironmentLogging
from lamina.model.functions import FunctionConfig
from lamina.sandbox.api import SandboxBackend, SandboxSpec
from lamina.sandbox.lifecycle import InitReported, InitStarted
from lamina.sandbox.log_sink import LogSink
from lamina.sandbox.mounts import PathMapping
from lamina.sandbox.output import READ_PER_WAKE, EnvironmentOutput, read_output
from lamina.sandbox.process import loopback_listener
from lamina.sandbox.snapshots import (
    ENVIRONMENTS_PER_SNAPSHOT,
    HIDDEN_VARIABLES,
    RUNTIME_API_ADDRESS,
    SNAPSHOT_SCRIPT,
    InitFailed,
    RestoredBackend,
    RuntimeSockets,
    Snapshot,
    SnapshotIsolation,
    spawn_snapshot,
)

if TYPE_CHECKING:
    from lamina.control.functions import FunctionService
    from lamina.invoke.service import InvokeService

log = logging.getLogger("lamina.invoke")

SNAP_START = "snap-start"
# AWS: the init of a SnapStart version may run for 130 seconds or the function's timeout,
# whichever is longer (at most 15 minutes).
MIN_INIT_TIMEOUT_S = 130.0
# AWS's words for a restore that took longer than its 10 seconds (SnapStartTimeoutException).
SNAPSTART_TIMEOUT = "Lambda couldn't restore the snapshot within the timeout limit."
# A snapshot chosen for an environment this recently is never stopped to make room.
_CHOSEN_RECENTLY_S = 60.0
# The reason code of a version whose snapshot's init failed.
FUNCTION_ERROR = "FunctionError"


def _identity(config: FunctionConfig) -> tuple[str, str]:
    """What tells one published version from another of the same number (a function deleted
    and created again): settling it changes its RevisionId, not these."""
    return config.code_sha256, config.last_modified


@dataclass
class _Made:
    identity: tuple[str, str]
    snapshot: Snapshot
    backend: RestoredBackend
    output_fd: int
    credentials: ContainerCredentials
    used_at: float = 0.0  # monotonic: when it was made, or last chosen for an environment
    chosen_at: float = float("-inf")  # monotonic: when last chosen for an environment


class SnapStart:
    """The snapshots of this node's SnapStart versions, made on request (`requested`)."""

    def __init__(
        self,
        service: InvokeService,
        backend: SandboxBackend,
        sink: LogSink,
        environment_logging: EnvironmentLogging,
        scratch_root: Path,
    ) -> None:
        self._service = service
        self._backend = backend
        self._sink = sink
        self._environment_logging = environment_logging
        self._scratch = scratch_root
        self._functions: FunctionService | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._made: dict[tuple[str, str], _Made] = {}
        # Snapshots stopped while serving whose death the event loop still waits for.
        self._stopping: list[Snapshot] = []
        self._making: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._sockets: RuntimeSockets | None = None
        self._keep = 0  # set by `serve`, before any snapshot is made

    def start(self) -> None:
        """Note the event loop requests from other threads are handed to."""
        self._loop = asyncio.get_running_loop()

    def serve(self, functions: FunctionService, keep: int) -> None:
        """Make the snapshots of the versions `functions` publishes, and tell it when done;
        keep at most `keep` of them (see `_make_room`)."""
        self._functions = functions
        self._keep = keep
        functions.use_snapshotter(self)

    def applies(self, config: FunctionConfig) -> bool:
        """Whether `config`'s environments are restored from a snapshot."""
        return self._functions is not None and snap_started(config)

    # ------------------------------------------------------------------ requests

    def requested(self, config: FunctionConfig) -> None:
        """A SnapStart version was published (Pending): make its snapshot, then settle it."""
        loop = self._loop
        if loop is None:
            try:
                loop = self._loop = asyncio.get_running_loop()
            except RuntimeError:
                log.error("no event loop to make the snapshot of %s", config.function_name)
                return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._begin(config, settle=True)
        else:
            loop.call_soon_threadsafe(self._begin, config, True)

    def backend(self, config: FunctionConfig) -> RestoredBackend:
        """The backend restoring `config`'s environments, or SnapStartNotReadyException while
        its snapshot is (made again) on this node."""
        self._loop = self._loop or asyncio.get_running_loop()
        made = self._made.get((config.function_name, config.version))
        if made is not None and made.identity == _identity(config) and made.snapshot.alive:
            made.used_at = made.chosen_at = time.monotonic()
            return made.backend
        self._begin(config, settle=False)
        raise SnapStartNotReady(SNAPSTART_NOT_READY)

    def _begin(self, config: FunctionConfig, settle: bool) -> None:
        key = (config.function_name, config.version)
        if key in self._making:
            return
        task = asyncio.ensure_future(self._make(config, settle))
        self._making[key] = task
        task.add_done_callback(lambda _: self._making.pop(key, None))

    async def _make(self, config: FunctionConfig, settle: bool) -> None:
        key = (config.function_name, config.version)
        failure: ActivationFailed | None = None
        try:
            made = await self._snapshot(config)
        except InitFailed as error:
            payload = error.payload
            failure = ActivationFailed(
                FUNCTION_ERROR,
                f"{payload.get('errorType', 'Runtime.Unknown')}: "
                f"{payload.get('errorMessage', '')}".strip(),
            )
        except Exception as error:
            log.exception("making the snapshot of %s:%s failed", *key)
            failure = ActivationFailed(INTERNAL_ERROR, f"Lamina could not snapshot it: {error}")
        else:
            previous = self._made.pop(key, None)
            if previous is not None:
                self._discard(previous)
            self._make_room()
            made.used_at = time.monotonic()
            self._made[key] = made
        if settle and self._functions is not None:
            await asyncio.to_thread(
                self._functions.snapshot_made,
                config.function_name,
                config.version,
                config.revision_id,
                failure,
            )

    # ------------------------------------------------------------------ snapshots

    async def _snapshot(self, config: FunctionConfig) -> _Made:
        """Start the version's snapshot process and wait for its init."""
        spec, command, group, stream = await self._service.sandbox_spec(config, SNAP_START)
        sink, lines = self._environment_logging(
            self._sink, config.logging, config.function_name, config.version, SNAP_START
        )
        output = EnvironmentOutput(sink, group, stream)
        lines.environment_event(InitStarted(config.runtime or "", command.interpreter), output)
        loop = asyncio.get_running_loop()
        credentials, shared = self._credentials(config)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        loop.add_reader(read_fd, _drain, read_fd, output, READ_PER_WAKE)
        started = time.perf_counter()
        try:
            process, isolation, mapping = await self._spawn(
                spec, theirs.fileno(), write_fd, credentials.variables
            )
        except BaseException:
            _stop_reading(loop, read_fd)
            ours.close()
            _close_credentials(credentials, shared, None)
            raise
        finally:
            os.close(write_fd)
            theirs.close()
        snapshot = Snapshot(process, ours, isolation)
        try:
            # The snapshot's own: in its network namespace, or on the host's loopback.
            own = isolation.listener if isolation is not None else None
            listener = own or shared
            assert listener is not None
            await credentials.serve(listener)
            await snapshot.ready(max(MIN_INIT_TIMEOUT_S, float(config.timeout)))
        except InitFailed as failure:
            snapshot.close()
            _close_credentials(credentials, shared, isolation)
            _drain(read_fd, output)
            _stop_reading(loop, read_fd)
            error_type = str(failure.payload.get("errorType") or "")
            if not error_type.startswith(("Runtime.", "Function.", "Sandbox.")):
                error_type = "Runtime.Unknown"
            elapsed = (time.perf_counter() - started) * 1000
            lines.environment_event(InitReported(elapsed, failure.status, error_type), output)
            raise
        except BaseException:
            # Cancelled (the server is stopping): nothing may outlive the attempt.
            snapshot.close()
            _close_credentials(credentials, shared, isolation)
            _stop_reading(loop, read_fd)
            raise
        _drain(read_fd, output)
        lines.environment_event(InitReported((time.perf_counter() - started) * 1000), output)
        backend = self._restoring(spec, snapshot, mapping, credentials)
        return _Made(_identity(config), snapshot, backend, read_fd, credentials)

    def _restoring(
        self,
        spec: SandboxSpec,
        snapshot: Snapshot,
        mapping: PathMapping,
        credentials: ContainerCredentials,
    ) -> RestoredBackend:
        """The backend of a ready snapshot's environments."""
        isolation = snapshot.isolation
        if isolation is not None and isolation.cgroup is not None:
            # The init ran at full speed, as any environment's. What stays in the snapshot's
            # group from now on (threads init left, held namespaces, children that never
            # reached their own group) gets no more CPU than one environment.
            isolation.cgroup.cap_cpu(spec.memory_mb)
        if self._sockets is None:
            self._sockets = RuntimeSockets()
        namespaced = isolation is not None
        backend = RestoredBackend(
            snapshot,
            self._sockets,
            self._backend.restored_cgroup if namespaced else _no_cgroup,  # type: ignore[attr-defined]
            mapping,
            self._backend.name,
            getattr(self._backend, "network", None) if namespaced else None,
            credentials,
        )
        backend.prepare(spec.network)
        return backend

    def _credentials(
        self, config: FunctionConfig
    ) -> tuple[ContainerCredentials, socket.socket | None]:
        """The version's credentials endpoint, and the host loopback listener that serves it
        to the snapshot and its environments when they share the host's network (None when
        each has a network namespace of its own, where it is served at 127.0.0.1:9001)."""
        issue = functools.partial(self._service.execution_session, config)
        own_network = (
            self._backend.name.split("+", 1)[0] == "namespace"
            and getattr(self._backend, "network", None) is not None
        )
        if own_network:
            return ContainerCredentials(issue, RUNTIME_API_ADDRESS), None
        shared = loopback_listener()
        return ContainerCredentials(issue, f"127.0.0.1:{shared.getsockname()[1]}"), shared

    async def _spawn(
        self, spec: SandboxSpec, control_fd: int, output_fd: int, credentials: dict[str, str]
    ) -> tuple[subprocess.Popen[bytes], SnapshotIsolation | None, PathMapping]:
        """The snapshot process, isolated as the backend isolates environments."""
        variables = {k: v for k, v in spec.environment.items() if k not in HIDDEN_VARIABLES}
        variables.update(credentials)
        if self._backend.name.split("+", 1)[0] == "namespace":
            return await self._backend.start_snapshot(  # type: ignore[attr-defined,no-any-return]
                replace(spec, environment=variables),
                SNAPSHOT_SCRIPT,
                control_fd,
                output_fd,
                ENVIRONMENTS_PER_SNAPSHOT,
            )
        argv = [spec.command[0], "-u", str(SNAPSHOT_SCRIPT), str(control_fd)]
        variables["LAMBDA_TASK_ROOT"] = str(spec.task_root)
        return spawn_snapshot(argv, variables, output_fd, control_fd, None), None, []

    def _make_room(self) -> None:
        """Below the node's limit, by stopping the least recently used snapshots that no
        environment runs from (one in use stays: stopping it would end its environments)."""
        # One chosen in the last minute may be about to start an environment: it stays too.
        recent = time.monotonic() - _CHOSEN_RECENTLY_S
        idle = sorted(
            (made.used_at, key)
            for key, made in self._made.items()
            if made.backend.live == 0 and made.chosen_at < recent
        )
        for _, key in idle[: max(0, len(self._made) + 1 - self._keep)]:
            log.info("SnapStart snapshot of %s:%s stopped to make room", *key)
            self._discard(self._made.pop(key))

    def sweep(self, current: Callable[[str, str], FunctionConfig | None]) -> None:
        """Stop the snapshots of versions deleted (or replaced) since they were made;
        `current` gives a version's configuration, None once it is gone."""
        for key, made in list(self._made.items()):
            config = current(*key)
            if config is None or _identity(config) != made.identity:
                del self._made[key]
                self._discard(made)

    def _discard(self, made: _Made, wait: bool = False) -> None:
        """Stop a snapshot; without `wait`, its death is seen to by the event loop."""
        made.backend.close()
        made.snapshot.close(wait)
        self._stopping = [snapshot for snapshot in self._stopping if not snapshot.finished]
        if not made.snapshot.finished:
            self._stopping.append(made.snapshot)
        made.credentials.close()
        try:
            _stop_reading(asyncio.get_running_loop(), made.output_fd)
        except RuntimeError:  # no loop running any more: the descriptor still goes
            with contextlib.suppress(OSError):
                os.close(made.output_fd)

    def close(self) -> None:
        """Stop every snapshot (the server is stopping)."""
        for task in self._making.values():
            task.cancel()
        for made in self._made.values():
            self._discard(made, wait=True)
        self._made.clear()
        for snapshot in self._stopping:
            snapshot.close()  # waits: nothing it held outlives the server
        self._stopping.clear()
        if self._sockets is not None:
            self._sockets.close()


def _close_credentials(
    credentials: ContainerCredentials,
    shared: socket.socket | None,
    isolation: SnapshotIsolation | None,
) -> None:
    """Stop serving a snapshot's credentials, and close the listeners never served."""
    credentials.close()
    for listener in (shared, isolation.listener if isolation is not None else None):
        if listener is not None:
            listener.close()


def _no_cgroup(environment_id: str, memory_mb: int) -> None:
    return None


def _drain(fd: int, output: EnvironmentOutput, limit: int | None = None) -> None:
    """Take what the snapshot and its environments wrote to their output pipe (at most
    about `limit` bytes). At its end (every writer gone: the snapshot died), stop watching
    it, or the loop would be woken for it again and again; the descriptor stays open until
    the snapshot is discarded."""
    if read_output(fd, output, limit):
        with contextlib.suppress(ValueError, RuntimeError, OSError):
            asyncio.get_running_loop().remove_reader(fd)


def _stop_reading(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    with contextlib.suppress(ValueError, RuntimeError, OSError):
        loop.remove_reader(fd)
    with contextlib.suppress(OSError):
        os.close(fd)
