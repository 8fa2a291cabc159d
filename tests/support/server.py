"""A real Lamina server in a child process, on a free port, for integration tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from tests.support.ports import free_port
from tests.support.waiting import wait_until


class LaminaServer:
    """Starts `lamina serve` and waits until it answers; `kill()` is a hard crash."""

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str] | None = None,
        port: int | None = None,
        cwd: Path | None = None,
    ):
        self.data_dir = data_dir
        self.cwd = cwd
        self.port = port or free_port()
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = (cwd or Path()).joinpath(data_dir).parent / f"server-{self.port}.log"
        self._log: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *extra_args: str, timeout: float = 15.0) -> LaminaServer:
        command = [
            sys.executable,
            "-m",
            "lamina",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *extra_args,
        ]
        self._close_log()
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command, env=self.env, stdout=self._log, stderr=self._log, cwd=self.cwd
        )
        wait_until(
            self._answers,
            timeout=timeout,
            interval=0.05,
            message=lambda: f"server did not start: {self.log_path.read_text()}",
            ignoring=(OSError,),
        )
        return self

    def _answers(self) -> bool:
        """Whether the server answers its health check (OSError while it cannot yet)."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"server exited early: {self.log_path.read_text()}")
        with urllib.request.urlopen(f"{self.endpoint}/_lamina/health", timeout=1):
            return True

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_log()

    def client(self, service: str = "lambda", **kwargs: Any) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=kwargs.pop("access_key", "test"),
            aws_secret_access_key=kwargs.pop("secret_key", "test"),
            config=Config(retries={"max_attempts": 1, "mode": "standard"}, **kwargs),
        )


def metrics(server: LaminaServer) -> dict[str, Any]:
    """The server's own counters (`/_lamina/metrics`): per metric, per function, statistics."""
    with urllib.request.urlopen(f"{server.endpoint}/_lamina/metrics", timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result


def server_log(server: LaminaServer) -> str:
    """Everything the server has written to its log so far."""
    return server.log_path.read_text(errors="replace")


def lambda_client_of(server: LaminaServer) -> Iterator[Any]:
    """A client fixture's body: the server's Lambda client, closed once the fixture ends."""
    client = server.client("lambda")
    try:
        yield client
    finally:
        client.close()
