"""The physical floor target: bench/suite/floor/server.py on the functions' interpreters."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.server import free_port

from bench.suite.handlers import FunctionSpec
from bench.suite.peers import PeerUnavailable, describe, interpreter
from bench.suite.targets.base import Capability, HttpSession, Session, Target

FLOOR_DIR = Path(__file__).resolve().parents[1] / "floor"
CHILDREN = {"python": "child.py", "node": "child.js"}


class FloorSession(HttpSession):
    def retire(self, names: Iterable[str]) -> None:
        for name in names:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            connection.request("DELETE", f"/functions/{name}")
            connection.getresponse().read()
            connection.close()


class FloorTarget(Target):
    name = "floor"
    label = "floor (stdlib HTTP server + warm child over a pipe)"

    def __init__(self) -> None:
        self.interpreters: dict[str, str] = {}

    def unsupported(self, capability: Capability) -> str | None:
        return {
            Capability.MEMORY_LIMIT: "a floor sets no limits",
            Capability.FUNCTION_URL: "the floor has one HTTP path: Invoke",
            Capability.ASYNC: "the floor has no queue",
        }.get(capability)

    def prepare(self) -> str | None:
        try:
            self.interpreters = {
                "python": interpreter("python3.12"),
                "node": interpreter("nodejs20.x"),
            }
        except PeerUnavailable as error:
            return describe(error)
        return None

    @contextmanager
    def session(self, functions: list[FunctionSpec]) -> Iterator[Session]:
        with tempfile.TemporaryDirectory(prefix="floor-bench-") as tmp:
            workdir = Path(tmp)
            config: dict[str, Any] = {}
            for function in functions:
                code = workdir / function.name
                code.mkdir()
                (code / function.filename).write_text(function.source)
                child = str(FLOOR_DIR / CHILDREN[function.runtime])
                argv = [self.interpreters[function.runtime], child, str(code), function.workload]
                config[function.name] = argv
            with floor_server("server.py", config) as (port, pid):
                session = FloorSession(port, pid)
                try:
                    yield session
                finally:
                    session.close()


@contextmanager
def floor_server(script: str, config: dict[str, Any]) -> Iterator[tuple[int, int]]:
    """(port, pid) of the floor server `script` (in bench/suite/floor) given `config`, in a
    session of its own so that stopping it stops every child too."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump(config, file)
        file.flush()
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, str(FLOOR_DIR / script), file.name, str(port)],
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            assert process.stdout is not None
            if process.stdout.readline().strip() != b"serving":
                raise PeerUnavailable(f"the floor server {script} did not start")
            yield port, process.pid
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            if process.stdout is not None:
                process.stdout.close()
