"""A local Lamina cluster for trying it out (`make cluster`).

Starts several `lamina serve` nodes as separate processes on this machine's PostgreSQL and
Redis, each with its own port and data directory, waits until every one answers its health
check, and prints where they are. Ctrl-C (or SIGTERM) stops them all. A node that dies on
its own is reported; the others keep running, as a cluster would.

Run it with the virtualenv's Python (`.venv/bin/python scripts/cluster.py`); the nodes run
with the same interpreter. Settings, all optional:

    LAMINA_CLUSTER_STORE  PostgreSQL URL (default postgresql://postgres@127.0.0.1:5432/lamina;
                          the database is created if it is missing)
    LAMINA_CLUSTER_REDIS  Redis URL (default redis://127.0.0.1:6379/0)
    LAMINA_CLUSTER_NODES  how many nodes (default 3)
    LAMINA_CLUSTER_PORT   the first node's port; the others follow (default 9001)
    LAMINA_CLUSTER_DIR    where node1, node2, ... keep their data and logs
                          (default .lamina-cluster)

Each node lends its environments an equal part of three quarters of the machine's memory
(LAMINA_WORKER_MEMORY_MB), since they share one machine; set that variable to choose.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from lamina.cluster.gate import default_capacity_mb

DEFAULT_STORE = "postgresql://postgres@127.0.0.1:5432/lamina"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
# A node opens its store, runs migrations and starts its template process before it answers.
START_TIMEOUT_S = 60.0
# How long a node gets to finish its calls and stop its environments after SIGTERM.
STOP_TIMEOUT_S = 20.0
POLL_S = 0.2


@dataclass(frozen=True)
class Config:
    store: str
    redis: str
    nodes: int
    first_port: int
    root: Path
    worker_memory_mb: int

    @classmethod
    def from_env(cls) -> Config:
        nodes = int(os.environ.get("LAMINA_CLUSTER_NODES") or 3)
        if nodes < 1:
            raise SystemExit("cluster: LAMINA_CLUSTER_NODES must be at least 1")
        return cls(
            store=os.environ.get("LAMINA_CLUSTER_STORE") or DEFAULT_STORE,
            redis=os.environ.get("LAMINA_CLUSTER_REDIS") or DEFAULT_REDIS,
            nodes=nodes,
            first_port=int(os.environ.get("LAMINA_CLUSTER_PORT") or 9001),
            root=Path(os.environ.get("LAMINA_CLUSTER_DIR") or ".lamina-cluster"),
            worker_memory_mb=int(
                os.environ.get("LAMINA_WORKER_MEMORY_MB") or default_capacity_mb() // nodes
            ),
        )


class Node:
    """One `lamina serve` child process, its log file and its address."""

    def __init__(self, index: int, config: Config) -> None:
        self.name = f"node{index}"
        self.port = config.first_port + index - 1
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.data_dir = config.root / self.name
        self.log_path = config.root / f"{self.name}.log"
        self._config = config
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.reported_dead = False

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")  # One run's log: its tail explains a death.
        command = [
            sys.executable,
            "-m",
            "lamina",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--store",
            self._config.store,
            "--redis",
            self._config.redis,
        ]
        # A session of its own: the terminal's Ctrl-C reaches only this launcher, which then
        # stops the nodes one by one and waits for each, instead of racing them.
        # Each node would otherwise count three quarters of the machine as its own.
        env = {
            **os.environ,
            "LAMINA_WORKER_MEMORY_MB": str(self._config.worker_memory_mb),
            # Every node seals and opens environment variables with the same key.
            "LAMINA_MASTER_KEY_FILE": str(self._config.root.absolute() / "master-key"),
        }
        self.process = subprocess.Popen(
            command, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/_lamina/health", timeout=1) as reply:
                return bool(reply.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def signal(self, number: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(number)

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def ensure_database(store: str) -> None:
    """Create the store's database if it does not exist (the nodes create their tables)."""
    import psycopg
    from psycopg import sql

    name = urlsplit(store).path.lstrip("/")
    if not name:
        return
    # Any existing database will do to issue CREATE DATABASE from; `postgres` always exists.
    admin_url = urlunsplit(urlsplit(store)._replace(path="/postgres"))
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
            found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if found.fetchone() is None:
                try:
                    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                    say(f"created PostgreSQL database {name!r}")
                except psycopg.errors.DuplicateDatabase:
                    pass  # Another launcher created it in the meantime.
    except psycopg.OperationalError as error:
        raise SystemExit(f"cluster: cannot reach PostgreSQL at {store}: {error}") from None


def how_it_ended(code: int | None) -> str:
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def say(text: str) -> None:
    print(f"cluster: {text}", flush=True)


class Stop:
    """Set by SIGINT, SIGTERM or SIGHUP; a second signal while stopping kills the nodes at
    once."""

    def __init__(self) -> None:
        self.requested = False
        self.urgent = False

    def __call__(self, number: int, frame: FrameType | None) -> None:
        if self.requested:
            self.urgent = True
        self.requested = True


def wait_until_healthy(nodes: list[Node], stop: Stop) -> bool:
    """Whether every node answered its health check before the timeout, a death or a stop."""
    deadline = time.monotonic() + START_TIMEOUT_S
    waiting = list(nodes)
    while waiting:
        if stop.requested:
            return False
        for node in list(waiting):
            code = node.exit_code()
            if code is not None:
                say(f"{node.name} {how_it_ended(code)} while starting; its log ends:")
                print(node.log_tail(), flush=True)
                return False
            if node.answers():
                waiting.remove(node)
        if time.monotonic() > deadline:
            names = ", ".join(node.name for node in waiting)
            say(f"{names} did not answer within {START_TIMEOUT_S:g} s (see their logs)")
            return False
        time.sleep(POLL_S)
    return True


def print_endpoints(nodes: list[Node], config: Config) -> None:
    say(f"{len(nodes)} nodes on {config.store} and {config.redis}")
    say(f"each lends its environments {config.worker_memory_mb} MB (LAMINA_WORKER_MEMORY_MB)")
    for node in nodes:
        print(f"  {node.name}  {node.endpoint}   log: {node.log_path}", flush=True)
    first, last = nodes[0].endpoint, nodes[-1].endpoint
    print(
        "\nPoint the AWS CLI at any node (any credentials, region us-east-1):\n"
        "  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test "
        "AWS_DEFAULT_REGION=us-east-1\n"
        '  printf \'def handler(event, context):\\n    return {"hello": "world"}\\n\' '
        "> app.py\n"
        "  python3 -m zipfile -c app.zip app.py\n"
        f"  aws --endpoint-url {first} lambda create-function --function-name hello \\\n"
        "      --runtime python3.12 --handler app.handler --zip-file fileb://app.zip \\\n"
        "      --role arn:aws:iam::000000000000:role/lambda\n"
        f"  aws --endpoint-url {last} lambda invoke --function-name hello out.json\n"
        f"  .venv/bin/lamina cluster status --endpoint {first}\n"
        f"\nCtrl-C stops all {len(nodes)} nodes.",
        flush=True,
    )


def watch(nodes: list[Node], stop: Stop) -> None:
    """Until a stop is requested: report each node that dies; give up when none is left."""
    while not stop.requested:
        for node in nodes:
            code = node.exit_code()
            if code is not None and not node.reported_dead:
                node.reported_dead = True
                say(f"{node.name} ({node.endpoint}) {how_it_ended(code)}; its log ends:")
                print(node.log_tail(), flush=True)
        if all(node.reported_dead for node in nodes):
            say("every node has died")
            return
        time.sleep(POLL_S)


def stop_all(nodes: list[Node], stop: Stop) -> bool:
    """SIGTERM every live node and wait; SIGKILL what outlives the timeout or a second
    Ctrl-C. Whether every node that was still running stopped cleanly."""
    running = [node for node in nodes if node.exit_code() is None]
    if running:
        say(f"stopping {', '.join(node.name for node in running)}")
    for node in running:
        node.signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(node.exit_code() is None for node in running):
        if stop.urgent or time.monotonic() > deadline:
            for node in running:
                node.signal(signal.SIGKILL)
        time.sleep(POLL_S / 2)
    clean = True
    for node in running:
        code = node.exit_code()
        # uvicorn shuts down gracefully on SIGTERM, then raises the signal again on itself.
        if code not in (0, -signal.SIGTERM):
            clean = False
            say(f"{node.name} {how_it_ended(code)} (see {node.log_path})")
        node.close_log()
    for node in nodes:
        node.close_log()
    return clean


def main() -> int:
    config = Config.from_env()
    stop = Stop()
    # SIGHUP too: closing the terminal must not leave the nodes (in sessions of their own)
    # running without anyone to stop them.
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, stop)
    ensure_database(config.store)
    config.root.mkdir(parents=True, exist_ok=True)
    nodes = [Node(index, config) for index in range(1, config.nodes + 1)]
    for node in nodes:
        node.start()
    healthy = wait_until_healthy(nodes, stop)
    if healthy:
        print_endpoints(nodes, config)
        watch(nodes, stop)
    stopped_cleanly = stop_all(nodes, stop)
    dead = [node.name for node in nodes if node.reported_dead]
    if dead:
        say(f"stopped; {', '.join(dead)} had died before")
    elif healthy and stopped_cleanly:
        say("all nodes stopped")
    # Ctrl-C while the nodes were starting is a stop like any other.
    started_or_stopped = healthy or stop.requested
    return 0 if started_or_stopped and stopped_cleanly and not dead else 1


if __name__ == "__main__":
    sys.exit(main())
