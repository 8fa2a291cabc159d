"""What every target offers the workloads: deploy functions, invoke them, account its cost."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from contextlib import AbstractContextManager
from enum import StrEnum

from bench.suite import proctree
from bench.suite.client import Connection, LoadResult, load
from bench.suite.handlers import FunctionSpec


class Capability(StrEnum):
    """Things some targets cannot do; the report says "not supported" with the reason."""

    WARM = "warm environments"
    CONCURRENCY = "concurrent invocations"
    MEMORY_LIMIT = "enforcing MemorySize"
    IDLE_ENVIRONMENTS = "idle warm environments"
    FUNCTION_URL = "function URLs"
    ASYNC = "asynchronous invocation"


class Session(ABC):
    """A running target with the suite's functions deployed."""

    # The process whose tree is the target (None: no process outlives a call).
    root_pid: int | None = None

    @abstractmethod
    def call(self, name: str, body: bytes = b"{}", fresh: bool = False) -> tuple[float, bytes]:
        """One synchronous invoke: milliseconds and the answer. `fresh`: on a new connection."""

    @abstractmethod
    def load(
        self,
        name: str,
        concurrency: int,
        total: int,
        body: bytes = b"{}",
        duration: float | None = None,
        keep_bodies: bool = False,
    ) -> LoadResult: ...

    def url_load(self, name: str, concurrency: int, total: int) -> LoadResult:
        raise NotImplementedError

    @abstractmethod
    def cpu_seconds(self) -> float:
        """CPU the target's whole process tree has used so far."""

    @abstractmethod
    def retire(self, names: Iterable[str]) -> None:
        """Release these functions' environments (memory on a 2-core, shared machine)."""


class HttpSession(Session):
    """A target that serves Lambda's Invoke API over HTTP from one root process."""

    def __init__(self, port: int, root_pid: int) -> None:
        self.port = port
        self.root_pid: int = root_pid
        self._connection = Connection(port)

    def invoke_path(self, name: str) -> str:
        return f"/2015-03-31/functions/{name}/invocations"

    def call(self, name: str, body: bytes = b"{}", fresh: bool = False) -> tuple[float, bytes]:
        if not fresh:
            return self._connection.post(self.invoke_path(name), body)
        connection = Connection(self.port)
        try:
            return connection.post(self.invoke_path(name), body)
        finally:
            connection.close()

    def load(
        self,
        name: str,
        concurrency: int,
        total: int,
        body: bytes = b"{}",
        duration: float | None = None,
        keep_bodies: bool = False,
    ) -> LoadResult:
        return load(
            self.port, self.invoke_path(name), concurrency, total, body, duration, keep_bodies
        )

    def cpu_seconds(self) -> float:
        return proctree.cpu_seconds(self.root_pid)

    def close(self) -> None:
        self._connection.close()


class Target(ABC):
    """Something to benchmark: started fresh for every round."""

    name: str
    label: str
    runtimes: tuple[str, ...] = ("python", "node")
    # Why the other runtimes are not measured, as the report's cells say it.
    other_runtimes: str = ""

    def unsupported(self, capability: Capability) -> str | None:
        """Why this target cannot do `capability`, or None if it can."""
        return None

    def prepare(self) -> str | None:
        """Install or check what the target needs, once; a reason to skip it, or None.

        Peers do not skip: one that cannot be installed stops the run (`bench.suite.peers`)."""
        return None

    def version(self) -> str:
        """What exactly was measured (package versions), after prepare()."""
        return ""

    @abstractmethod
    def session(self, functions: list[FunctionSpec]) -> AbstractContextManager[Session]: ...
