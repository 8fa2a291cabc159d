"""python-lambda-local: a CLI that runs one event per process.

Each call starts an interpreter, which forks a child (multiprocessing) that imports the
handler and runs it once. It is measured as exactly that: every call is a cold start; it
has no warm environments, no concurrency of its own, no memory limit and Python only.

It and each of its dependencies are pinned to exact versions in
bench/peers/python-lambda-local/requirements.txt.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.suite.client import InvokeFailed, LoadResult
from bench.suite.handlers import FunctionSpec
from bench.suite.peers import (
    PEERS_DIR,
    PINS_DIR,
    PeerNotInstalled,
    PeerUnavailable,
    describe,
    interpreter,
    pip_install,
)
from bench.suite.targets.base import Capability, Session, Target

NO_PROCESS_REUSE = "one new process per invocation: nothing stays warm"


class LambdaLocalSession(Session):
    def __init__(self, executable: Path, workdir: Path, functions: list[FunctionSpec]) -> None:
        self._executable = executable
        self._workdir = workdir
        self._functions = {function.name: function for function in functions}
        self._cpu_seconds = 0.0
        for function in functions:
            directory = workdir / function.name
            directory.mkdir()
            (directory / function.filename).write_text(function.source)

    def call(self, name: str, body: bytes = b"{}", fresh: bool = False) -> tuple[float, bytes]:
        function = self._functions[name]
        event = self._workdir / "event.json"
        event.write_bytes(body)
        command = [
            str(self._executable),
            *("-f", "handler", "-t", "60"),
            str(self._workdir / name / function.filename),
            str(event),
        ]
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert process.stdout is not None
        output = process.stdout.read()
        process.stdout.close()
        # wait4 rather than Popen.wait: it also says how much CPU the process and the child
        # it forked (reaped by it) used, as /proc would for a server's tree.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        elapsed = (time.perf_counter() - started) * 1000
        self._cpu_seconds += usage.ru_utime + usage.ru_stime
        if process.returncode != 0:
            raise InvokeFailed(f"python-lambda-local {name}: {output[-300:]!r}")
        return elapsed, result_of(output)

    def load(
        self,
        name: str,
        concurrency: int,
        total: int,
        body: bytes = b"{}",
        duration: float | None = None,
        keep_bodies: bool = False,
    ) -> LoadResult:
        raise NotImplementedError(NO_PROCESS_REUSE)

    def cpu_seconds(self) -> float:
        return self._cpu_seconds

    def retire(self, names: Iterable[str]) -> None:
        """Nothing to do: no process outlives its call."""


def result_of(output: bytes) -> bytes:
    """The handler's result: what follows the CLI's `RESULT:` log line (a Python repr)."""
    import ast
    import json

    text = output.decode(errors="replace").rsplit("RESULT:\n", 1)[-1].strip()
    try:
        return json.dumps(ast.literal_eval(text)).encode()
    except (SyntaxError, ValueError):
        return b"{}"


class LambdaLocalTarget(Target):
    name = "python-lambda-local"
    label = "python-lambda-local (a process per invocation)"
    runtimes = ("python",)
    other_runtimes = "not supported: python-lambda-local runs Python only"

    def __init__(self, peers_dir: Path = PEERS_DIR) -> None:
        self.directory = peers_dir / self.name
        self.executable: Path | None = None

    def unsupported(self, capability: Capability) -> str | None:
        return {
            Capability.WARM: NO_PROCESS_REUSE,
            Capability.CONCURRENCY: "a CLI that runs one event per process: no server to load",
            Capability.MEMORY_LIMIT: "MemorySize is not enforced",
            Capability.IDLE_ENVIRONMENTS: NO_PROCESS_REUSE,
            Capability.FUNCTION_URL: "no HTTP server",
            Capability.ASYNC: "no asynchronous invocation",
        }.get(capability)

    def prepare(self) -> None:
        """Install the pinned set (once); PeerNotInstalled, stopping the run, if it cannot."""
        requirements = PINS_DIR / self.name / "requirements.txt"
        try:
            python = interpreter("python3.12")
            bin_dir = pip_install(requirements, self.directory, python)
        except PeerUnavailable as error:
            raise PeerNotInstalled(self.name, describe(error)) from error
        self.executable = bin_dir / "python-lambda-local"

    def version(self) -> str:
        assert self.executable is not None
        site = self.executable.parent.parent / "lib"
        found = sorted(site.glob("python*/site-packages/python_lambda_local-*.dist-info"))
        if not found:
            return ""
        return "python-lambda-local " + found[-1].name.removesuffix(".dist-info").rsplit("-")[-1]

    @contextmanager
    def session(self, functions: list[FunctionSpec]) -> Iterator[Session]:
        assert self.executable is not None, "prepare() first"
        with tempfile.TemporaryDirectory(prefix="lambda-local-bench-") as tmp:
            yield LambdaLocalSession(self.executable, Path(tmp), functions)
