"""The development loop: deploy once, then redeploy on every change, one line each."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from pathlib import Path

from lamina.dev.deploy import Deployer, DeployError
from lamina.dev.package import Package, build_package
from lamina.dev.server import EmbeddedServer, ServerError
from lamina.dev.watch import SourceWatcher

Printer = Callable[[str], None]


def _say(line: str) -> None:
    print(line, flush=True)  # flushed: the output is often a pipe (a test, an IDE, `tee`)


def _clock() -> str:
    return time.strftime("%H:%M:%S")


def _describe(changed: list[str]) -> str:
    shown = ", ".join(changed[:3])
    return shown + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")


def _size(package: Package) -> str:
    size = len(package.archive)
    return f"{size / 1024:.1f} KB" if size < 1 << 20 else f"{size / (1 << 20):.1f} MB"


class DevLoop:
    """Runs until interrupted; a refused redeploy is reported and the next save retries."""

    def __init__(
        self,
        directory: Path,
        deployer: Deployer,
        endpoint: str,
        *,
        public_url: bool = False,
        server: EmbeddedServer | None = None,
        excluded: Path | None = None,
        out: Printer = _say,
    ) -> None:
        self._directory = directory
        self._deployer = deployer
        self._endpoint = endpoint
        self._public_url = public_url
        self._server = server
        self._excluded = excluded
        self._out = out

    def run(self) -> None:
        spec = self._deployer.spec
        changes = SourceWatcher(self._directory, self._excluded).changes()
        # The watch is in place once this returns, so a save made during the first deploy
        # is seen and deployed after it.
        next(changes)
        started = time.monotonic()
        package = build_package(self._directory, self._excluded)
        outcome = self._deployer.deploy(package.archive)
        self._out(
            f"{outcome.capitalize()} {spec.name} ({spec.runtime}, handler {spec.handler}, "
            f"{package.files} files, {_size(package)}) in {time.monotonic() - started:.2f}s"
        )
        self._print_usage()
        self._out(f"Watching {self._directory} for changes (Ctrl-C to stop)")
        deployed, count = package.digest, 1
        for changed in changes:
            if self._server is not None and not self._server.alive:
                raise ServerError(f"the embedded server stopped:\n{self._server.log_tail()}")
            if not changed:
                continue
            started = time.monotonic()
            package = build_package(self._directory, self._excluded)
            if package.digest == deployed:
                continue  # saved without a change, or changed back
            try:
                self._deployer.update_code(package.archive)
            except DeployError as error:
                self._out(f"[{_clock()}] redeploy failed: {error} (the next save retries)")
                continue
            deployed, count = package.digest, count + 1
            self._out(
                f"[{_clock()}] redeployed {spec.name} #{count} in "
                f"{time.monotonic() - started:.2f}s: {_describe(changed)}"
            )

    def _print_usage(self) -> None:
        name = self._deployer.spec.name
        command = [
            "aws",
            "lambda",
            "invoke",
            "--endpoint-url",
            self._endpoint,
            "--function-name",
            name,
            "--cli-binary-format",
            "raw-in-base64-out",
            "--payload",
            "{}",
            "/dev/stdout",
        ]
        self._out(f"  invoke: {shlex.join(command)}")
        logs = ["lamina", "logs", name, "--follow", "--endpoint", self._endpoint]
        self._out(f"  logs:   {shlex.join(logs)}")
        if self._public_url:
            try:
                url = self._deployer.ensure_public_url()
            except DeployError as error:
                self._out(f"  url:    not available: {error}")
            else:
                self._out(f"  url:    curl {url}")
