"""Lamina itself, in the variants the issue compares: isolation and the template on or off."""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.server import LaminaServer

from bench.harness import ROLE, url_path
from bench.suite.client import LoadResult, load
from bench.suite.handlers import FunctionSpec
from bench.suite.targets.base import Capability, HttpSession, Session, Target


def package(function: FunctionSpec) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(function.filename, function.source)
    return buffer.getvalue()


class LaminaSession(HttpSession):
    def __init__(self, server: LaminaServer, client: Any) -> None:
        assert server.process is not None
        super().__init__(server.port, server.process.pid)
        self.server = server
        self._client = client
        self._url_paths: dict[str, str] = {}

    def deploy(self, function: FunctionSpec) -> None:
        self._client.create_function(
            FunctionName=function.name,
            Runtime=function.aws_runtime,
            Role=ROLE,
            Handler=function.handler,
            MemorySize=function.memory_mb,
            Timeout=60,
            Code={"ZipFile": package(function)},
        )
        if function.url:
            self._url_paths[function.name] = self._public_url(function.name)

    def _public_url(self, name: str) -> str:
        """A NONE-auth URL with the two permissions AWS requires; its path form."""
        self._client.add_permission(
            FunctionName=name,
            StatementId="url-public",
            Action="lambda:InvokeFunctionUrl",
            Principal="*",
            FunctionUrlAuthType="NONE",
        )
        self._client.add_permission(
            FunctionName=name,
            StatementId="url-invoke",
            Action="lambda:InvokeFunction",
            Principal="*",
            InvokedViaFunctionUrl=True,
        )
        url = self._client.create_function_url_config(FunctionName=name, AuthType="NONE")
        return url_path(url["FunctionUrl"])

    def url_load(self, name: str, concurrency: int, total: int) -> LoadResult:
        return load(self.port, self._url_paths[name], concurrency, total)

    def retire(self, names: Iterable[str]) -> None:
        # Deleting a function stops its environments: the only way to free them early.
        for name in names:
            self._client.delete_function(FunctionName=name)


class LaminaTarget(Target):
    """A fresh `lamina serve` per round, configured by environment variables."""

    other_runtimes = "same as lamina: the template serves Python only"

    def __init__(
        self, name: str, label: str, env: dict[str, str], runtimes: tuple[str, ...] = ()
    ) -> None:
        self.name = name
        self.label = label
        self.env = {"LAMINA_IDLE_TIMEOUT": "600", **env}
        if runtimes:
            self.runtimes = runtimes

    def prepare(self) -> str | None:
        if self.env.get("LAMINA_ISOLATION") != "namespace":
            return None
        doctor = subprocess.run(
            [sys.executable, "-m", "lamina", "doctor"], capture_output=True, text=True, check=False
        )
        verdict = (doctor.stdout.splitlines() or ["`lamina doctor` printed nothing"])[0]
        return None if verdict.startswith("Isolation: namespace") else verdict

    def unsupported(self, capability: Capability) -> str | None:
        if capability is Capability.MEMORY_LIMIT and self.env.get("LAMINA_ISOLATION") == "process":
            return "the process backend caps memory with rlimits but has no CPU quota"
        return None

    @contextmanager
    def session(self, functions: list[FunctionSpec]) -> Iterator[Session]:
        with tempfile.TemporaryDirectory(prefix="lamina-bench-") as tmp:
            server = LaminaServer(Path(tmp) / "data", env=self.env).start()
            client = server.client()
            session = LaminaSession(server, client)
            try:
                for function in functions:
                    session.deploy(function)
                yield session
            finally:
                session.close()
                client.close()
                server.stop()


VARIANTS = (
    LaminaTarget(
        "lamina",
        "Lamina (namespaces + template, the default)",
        {"LAMINA_ISOLATION": "namespace", "LAMINA_ZYGOTE": "on"},
    ),
    LaminaTarget(
        "lamina-no-template",
        "Lamina, namespaces, no template",
        {"LAMINA_ISOLATION": "namespace", "LAMINA_ZYGOTE": "off"},
        # The template serves Python only: Node runs exactly as in the default variant.
        runtimes=("python",),
    ),
    LaminaTarget(
        "lamina-no-isolation",
        "Lamina, no isolation (process backend) + template",
        {"LAMINA_ISOLATION": "process", "LAMINA_ZYGOTE": "on"},
    ),
)
