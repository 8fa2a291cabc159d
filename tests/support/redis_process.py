"""A Redis server of the test's own, which the test may restart.

The machine's Redis (127.0.0.1:6379) is shared by every test running on the machine, and a
restart would wipe their keys too; a test that restarts Redis starts its own, with the
machine's settings (`--save "" --appendonly no`: it keeps nothing on disk, so a restart
loses every key, as on the machine).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import IO

import redis

from tests.support.ports import free_port
from tests.support.waiting import wait_until


def available() -> bool:
    return shutil.which("redis-server") is not None


class RedisProcess:
    """`redis-server` on 127.0.0.1 and a free port; `restart()` stops it and starts it again
    on the same port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.log_path = directory / f"redis-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> RedisProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_until(
            self.answers,
            timeout=timeout,
            interval=0.05,
            message=lambda: f"redis did not start: {self.log_path.read_text()}",
            ignoring=(redis.RedisError,),
        )
        return self

    def answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"redis exited: {self.log_path.read_text()}")
        with redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1) as client:
            return bool(client.ping())

    def stop(self) -> None:
        """SIGTERM, as a service manager stops it (Redis closes its clients and exits)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, timeout: float = 15.0) -> None:
        """Stop, then start on the same port; returns once it answers again."""
        self.stop()
        self.start(timeout)
