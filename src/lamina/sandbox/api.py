"""The sandbox seam: what every isolation backend provides.

A backend starts one runtime process tree for an environment, isolated as far as the host
allows; everything above it (the Runtime API, logs, pools) is the same for every backend.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from lamina.model.networks import FileSystemMount, NetworkPolicy

if TYPE_CHECKING:
    from lamina.sandbox.runtime_api import RuntimeChannel


@dataclass(frozen=True)
class SandboxSpec:
    """Everything a backend needs to start one environment's runtime."""

    command: tuple[str, ...]
    environment: dict[str, str]
    task_root: Path
    opt_dir: Path | None
    memory_mb: int
    ephemeral_mb: int
    # Where the environment's private /tmp lives on the host (the backend creates it).
    scratch_root: Path
    # The environment's Runtime API, for backends that restrict who may connect to it or
    # change limits once init is over.
    runtime_api: RuntimeChannel | None = None
    # The network the environment is placed in (None: the default egress policy) and the
    # access points it mounts; backends without network or mount isolation ignore both.
    network: NetworkPolicy | None = None
    file_systems: tuple[FileSystemMount, ...] = ()


class EntrypointError(Exception):
    """The runtime's executable could not be started (missing, not executable, not a
    program): a failed init of the function, not an error of the platform."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


# What execve answers for an executable it cannot run.
_EXEC_ERRORS = frozenset(
    {errno.ENOENT, errno.EACCES, errno.ENOEXEC, errno.ENOTDIR, errno.ELOOP, errno.ETXTBSY}
)


def exec_failure(error: OSError, argv: Sequence[str]) -> EntrypointError | None:
    """The `EntrypointError` behind `error` if it is exec refusing `argv[0]`, else None.

    subprocess names the executable in the OSError of a failed exec; uvloop names nothing.
    """
    if not argv or error.errno not in _EXEC_ERRORS or error.filename not in (None, argv[0]):
        return None
    return EntrypointError(argv[0], error.strerror or os.strerror(error.errno or 0))


class Sandbox(Protocol):
    """A started, isolated runtime process tree."""

    pid: int
    # Read end of the pipe carrying the runtime's stdout and stderr (non-blocking).
    output_fd: int
    tmp_dir: Path

    async def wait(self) -> int:
        """Wait for the runtime process to exit; returns its exit status."""
        ...

    def kill(self) -> None:
        """Stop every process of the environment at once (SIGKILL)."""
        ...

    def max_memory_bytes(self) -> int | None:
        """Peak memory of the environment so far, measured, or None if unknown."""
        ...

    def oom_killed(self) -> bool:
        """Whether the kernel killed the environment for exceeding its memory."""
        ...

    def cleanup(self) -> None:
        """Release host resources (private /tmp, cgroup) after the processes are gone."""
        ...


class SandboxBackend(Protocol):
    """Starts sandboxes; one per isolation technique."""

    name: str

    async def listen(self, spec: SandboxSpec) -> socket.socket:
        """The listening socket of the environment's Runtime API, made where its runtime
        will reach it (in its network namespace, for backends that give it one). Called
        before `start` with the same spec (the environment is `spec.scratch_root.name`)."""
        ...

    async def start(self, spec: SandboxSpec) -> Sandbox: ...

    def abandon(self, spec: SandboxSpec) -> None:
        """Give back what `listen` took for an environment whose `start` will not come."""
        ...

    def describe(self) -> list[tuple[str, bool, str]]:
        """(feature, active, why) lines for `lamina doctor` and the start-up banner."""
        ...

    def close(self) -> None:
        """Stop what is still running and release host resources (the server is stopping)."""
        ...
