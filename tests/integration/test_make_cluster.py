"""`make cluster` (scripts/cluster.py): a local cluster of `lamina serve` processes.

The launcher runs here with two nodes on a PostgreSQL database that does not exist yet (it
creates it; the test drops it after), the machine's Redis (the nodes' keys go under a prefix
of their own cluster), free ports and a temporary directory. A function created through the
AWS CLI on one node is invoked through the other; Ctrl-C (SIGINT) then stops both nodes and
the launcher cleanly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from tests.support.archives import make_zip
from tests.support.aws_cli import run_aws
from tests.support.backends import POSTGRES_URL
from tests.support.lambda_api import ROLE
from tests.support.ports import free_ports_in_a_row
from tests.support.redis import REDIS_URL
from tests.support.waiting import wait_until

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cluster.py"
NODES = 2
READY = "Ctrl-C stops all"
HANDLER = "def handler(event, context):\n    return {'hello': event.get('name')}\n"


class Launcher:
    """The script as a child process, its output collected line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the launcher exited early:\n{self.output}")
        return any(READY in line for line in self.lines)

    def close(self) -> None:
        """Kill the launcher and its nodes if the test failed before stopping them, and
        close the pipe."""
        if self.process.poll() is None:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            for pid in children.read_text().split():
                os.kill(int(pid), signal.SIGKILL)
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def store_url() -> Iterator[str]:
    """A database name nobody created: the launcher must create it."""
    name = f"lamina_make_{uuid.uuid4().hex[:12]}"
    try:
        yield urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.mark.slow
def test_two_nodes_start_share_functions_and_stop_on_ctrl_c(store_url: str, tmp_path: Path) -> None:
    first_port = free_ports_in_a_row(NODES)
    env = {
        **os.environ,
        "LAMINA_CLUSTER_STORE": store_url,
        "LAMINA_CLUSTER_REDIS": REDIS_URL,
        "LAMINA_CLUSTER_NODES": str(NODES),
        "LAMINA_CLUSTER_PORT": str(first_port),
        "LAMINA_CLUSTER_DIR": str(tmp_path / "cluster"),
    }
    launcher = Launcher(env)
    try:
        wait_until(launcher.ready, timeout=90, interval=0.2, message=lambda: launcher.output)
        endpoints = [f"http://127.0.0.1:{first_port + index}" for index in range(NODES)]
        assert all(endpoint in launcher.output for endpoint in endpoints)
        assert "created PostgreSQL database" in launcher.output

        (tmp_path / "app.zip").write_bytes(make_zip({"app.py": HANDLER}))
        created = run_aws(
            endpoints[0], tmp_path, "lambda", "create-function",
            "--function-name", "hello", "--runtime", "python3.12",
            "--handler", "app.handler", "--role", ROLE,
            "--zip-file", f"fileb://{tmp_path / 'app.zip'}",
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        invoked = run_aws(
            endpoints[-1], tmp_path, "lambda", "invoke", "--function-name", "hello",
            "--payload", '{"name": "node2"}', str(tmp_path / "out.json"),
        )  # fmt: skip
        assert invoked.returncode == 0, invoked.stderr
        assert (tmp_path / "out.json").read_text() == '{"hello":"node2"}'

        launcher.process.send_signal(signal.SIGINT)
        assert launcher.process.wait(timeout=60) == 0, launcher.output
        # The reader thread may still be taking the last lines from the pipe.
        wait_until(lambda: "all nodes stopped" in launcher.output, timeout=10)
        for port in range(first_port, first_port + NODES):
            with pytest.raises(ConnectionRefusedError):  # Nothing listens: the node is gone.
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        launcher.close()
