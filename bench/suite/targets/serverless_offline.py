"""serverless-offline (with the Serverless Framework v3, which needs no login).

The versions are pinned in bench/peers/serverless-offline/ (package.json and its
package-lock.json, installed with `npm ci`): serverless-offline 14 requires the Serverless
Framework v4, which needs a login, and unlocked ranges of 13's dependencies have resolved to
releases the registry did not serve (`No matching version found for @hapi/ammo@^6.0.2`).
To move on: change the versions in that package.json, run `npm install --package-lock-only`
beside it, and commit both files.

How it runs functions, as read in its source (13.x): it keeps a pool of instances per
function and reuses an idle one, so it has warm environments and creates another instance
when all are busy (concurrency). A Python instance is one long-lived `python3 -u invoke.py`
child (spawned through `/bin/sh`, found on PATH, so PATH is set here to the interpreter
Lamina uses) that reads events as JSON lines on stdin; a Node instance is a worker thread in
the server's own process. MemorySize is not enforced, and Event invokes are fire-and-forget.
Its API Gateway emulation (`httpApi`, payload format 2.0) stands in for function URLs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.server import free_port

from bench.suite.client import LoadResult, load
from bench.suite.handlers import FunctionSpec
from bench.suite.peers import (
    PEERS_DIR,
    PINS_DIR,
    PeerNotInstalled,
    PeerUnavailable,
    describe,
    interpreter,
    npm_ci,
)
from bench.suite.targets.base import Capability, HttpSession, Session, Target

SERVICE, STAGE = "bench", "dev"
START_TIMEOUT_S = 120


def serverless_yml(functions: list[FunctionSpec], ports: dict[str, int]) -> str:
    """The project file; JSON is valid YAML, and needs no YAML library here."""
    definitions: dict[str, object] = {}
    for function in functions:
        definition: dict[str, object] = {
            "handler": function.handler,
            "runtime": function.aws_runtime,
            "memorySize": function.memory_mb,
            "timeout": 60,
        }
        if function.url:
            definition["events"] = [{"httpApi": {"path": f"/{function.name}", "method": "POST"}}]
        definitions[function.name] = definition
    project = {
        "service": SERVICE,
        "frameworkVersion": "3",
        "plugins": ["serverless-offline"],
        "provider": {"name": "aws", "stage": STAGE, "region": "us-east-1"},
        "functions": definitions,
        "custom": {
            "serverless-offline": {
                "host": "127.0.0.1",
                "noPrependStageInUrl": True,
                # Lamina keeps idle environments for 600 s as well.
                "terminateIdleLambdaTime": 600,
                **ports,
            }
        },
    }
    return json.dumps(project, indent=1)


class ServerlessOfflineSession(HttpSession):
    def __init__(self, port: int, root_pid: int, http_port: int) -> None:
        super().__init__(port, root_pid)
        self.http_port = http_port

    def invoke_path(self, name: str) -> str:
        return f"/2015-03-31/functions/{SERVICE}-{STAGE}-{name}/invocations"

    def url_load(self, name: str, concurrency: int, total: int) -> LoadResult:
        return load(self.http_port, f"/{name}", concurrency, total)

    def retire(self, names: Iterable[str]) -> None:
        """Nothing to do: serverless-offline has no way to stop a function's instances."""


class ServerlessOfflineTarget(Target):
    name = "serverless-offline"
    label = "serverless-offline 13 (Serverless Framework 3)"

    def __init__(self, peers_dir: Path = PEERS_DIR) -> None:
        self.directory = peers_dir / self.name
        self.node_modules: Path | None = None

    def unsupported(self, capability: Capability) -> str | None:
        return {
            Capability.MEMORY_LIMIT: "MemorySize is not enforced, nor the CPU share it buys",
            Capability.ASYNC: "Event invokes are fire-and-forget: no queue to accept into or drain",
        }.get(capability)

    def prepare(self) -> None:
        """Install the locked set (once); PeerNotInstalled, stopping the run, if it cannot."""
        try:
            self.python_bin = str(Path(interpreter("python3.12")).parent)
            self.node = interpreter("nodejs20.x")
            self.node_modules = npm_ci(PINS_DIR / self.name, self.directory)
        except PeerUnavailable as error:
            raise PeerNotInstalled(self.name, describe(error)) from error

    def version(self) -> str:
        assert self.node_modules is not None
        versions = []
        for package in ("serverless", "serverless-offline"):
            manifest = json.loads((self.node_modules / package / "package.json").read_text())
            versions.append(f"{package} {manifest['version']}")
        return ", ".join(versions)

    @contextmanager
    def session(self, functions: list[FunctionSpec]) -> Iterator[Session]:
        assert self.node_modules is not None, "prepare() first"
        with tempfile.TemporaryDirectory(prefix="sls-bench-") as tmp:
            project = Path(tmp)
            ports = {
                name: free_port() for name in ("httpPort", "lambdaPort", "websocketPort", "albPort")
            }
            (project / "serverless.yml").write_text(serverless_yml(functions, ports))
            for function in functions:
                (project / function.filename).write_text(function.source)
            (project / "node_modules").symlink_to(self.node_modules)
            process = self._start(project)
            session = ServerlessOfflineSession(ports["lambdaPort"], process.pid, ports["httpPort"])
            try:
                self._wait_until_serving(process, ports["lambdaPort"], project)
                yield session
            finally:
                session.close()
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()

    def _start(self, project: Path) -> subprocess.Popen[bytes]:
        env = {
            **{key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"},
            "PATH": f"{self.python_bin}:{os.environ.get('PATH', '')}",
            "SLS_TELEMETRY_DISABLED": "1",
            "SLS_NOTIFICATIONS_MODE": "off",
            "SLS_DEPRECATION_DISABLE": "*",
        }
        assert self.node_modules is not None
        serverless = str(self.node_modules / "serverless" / "bin" / "serverless.js")
        log = (project / "server.log").open("wb")
        # Its own session: its Python children are killed with it, by process group.
        return subprocess.Popen(
            [self.node, serverless, "offline", "start"],
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @staticmethod
    def _wait_until_serving(process: subprocess.Popen[bytes], port: int, project: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log = (project / "server.log").read_text(errors="replace")[-2000:]
                raise PeerUnavailable(f"serverless offline exited: {log}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise PeerUnavailable(f"serverless offline did not listen within {START_TIMEOUT_S} s")
