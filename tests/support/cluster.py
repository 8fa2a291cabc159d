"""A Lamina cluster on one machine: N real `lamina serve` nodes, each in its own network
namespace on a bridge, sharing one PostgreSQL database and one Redis.

    with Cluster(tmp_path, nodes=3) as cluster:
        cluster.client(0).create_function(...)
        cluster.kill(1); cluster.restart(1)      # a crash (SIGKILL) and a reboot
        cluster.cut(2); cluster.heal(2)          # its network cable out, then back
        cluster.restart_redis()                  # every key lost, as on the machine

Each node listens on its namespace's address (10.77.X.Y, `--insecure`: there are no
credentials) and advertises it to the others. PostgreSQL (the machine's, a fresh database
dropped afterwards) and Redis (the test's own server, so that restarting it disturbs no
other test) listen on loopback in the root namespace; the nodes reach them through
forwarders on the bridge's address, which can also be paused (`store_outage()`). Clients
in the test (root namespace) reach the nodes over the bridge. Every node gets the same
master key file (sealed environment variables open on any node), as an operator would copy
it to every machine.

Everything is torn down on exit, failure or not: processes, namespaces, bridge, database.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import boto3
from botocore.config import Config

from tests.support import netns, redis_process
from tests.support.forwarder import Forwarder
from tests.support.postgres import fresh_database
from tests.support.redis_process import RedisProcess
from tests.support.waiting import wait_until

# The store's master key (lamina.store.sealing): sealed values opened by every node.
MASTER_KEY_BYTES = 32
# Every node has an address of its own, so all of them use the same port.
NODE_PORT = 9000
# Failure detection in seconds, not in tens of seconds: heartbeats, node expiry, and the
# leases on asynchronous events and event source mappings.
FAST_FAILURE_ENV = {
    "LAMINA_HEARTBEAT_SECONDS": "0.5",
    "LAMINA_NODE_EXPIRY_SECONDS": "2",
    "LAMINA_ASYNC_LEASE_SECONDS": "5",
    "LAMINA_MAPPING_LEASE_SECONDS": "3",
    "LAMINA_POLLER_RECONCILE_SECONDS": "0.5",
}


def available() -> bool:
    """Whether this machine can run a namespaced cluster (root, iproute2, redis-server)."""
    return netns.available() and redis_process.available()


def _private_file(path: Path, content: bytes) -> Path:
    """`content` in a file only its owner reads (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(content)
    return path


class Node:
    """One `lamina serve` process in its namespace; restartable on the same data directory
    and address."""

    def __init__(
        self, index: int, host: netns.Host, data_dir: Path, args: list[str], env: dict[str, str]
    ) -> None:
        self.index = index
        self.host = host
        self.data_dir = data_dir
        self.log_path = data_dir.parent / f"node{index}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._args = args
        self._env = env
        self._log: IO[bytes] | None = None

    @property
    def address(self) -> str:
        return self.host.address

    @property
    def endpoint(self) -> str:
        return f"http://{self.address}:{NODE_PORT}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Launch the process; `wait_ready()` waits for it to answer."""
        command = self.host.command(
            sys.executable,
            "-m",
            "lamina",
            "serve",
            "--host",
            self.address,
            "--port",
            str(NODE_PORT),
            "--advertise",
            self.endpoint,
            "--data-dir",
            str(self.data_dir),
            "--insecure",
            *self._args,
        )
        self._close_log()
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command, env=self._env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_until(
            self.answers,
            timeout=timeout,
            interval=0.1,
            message=lambda: f"node {self.index} did not start: {self.log_tail()}",
            ignoring=(OSError,),
        )

    def answers(self) -> bool:
        """Whether the node answers its health check (OSError while it cannot)."""
        if not self.alive:
            raise RuntimeError(f"node {self.index} exited: {self.log_tail()}")
        with urllib.request.urlopen(f"{self.endpoint}/_lamina/health", timeout=2):
            return True

    def kill(self) -> None:
        """A crash of the whole machine: SIGKILL the server and everything in its namespace
        (its environments too), so nothing of it runs on."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.host.kill_all()
        if self.process is not None:
            self.process.wait(10)
        self._close_log()

    def stop(self) -> None:
        if self.alive:
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.host.kill_all()
        self._close_log()

    def log_tail(self, characters: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-characters:]

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class Cluster:
    """N nodes, their network, the store and Redis they share; a context manager."""

    def __init__(
        self,
        root: Path,
        nodes: int = 3,
        env: dict[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
        node_args: dict[int, tuple[str, ...]] | None = None,
    ) -> None:
        """`extra_args` go to every node's `lamina serve`, `node_args[i]` to node i's only
        (e.g. `--no-worker` for an API-only frontend)."""
        self.root = root
        self.count = nodes
        self.nodes: list[Node] = []
        self.network = netns.Network()
        self.redis = RedisProcess(root / "redis")
        self.store_url = ""  # the database, as the root namespace reaches it
        self._env = {**os.environ, **FAST_FAILURE_ENV, **(env or {})}
        self._extra = list(extra_args)
        self._node_args = node_args or {}
        self._forwarders: list[Forwarder] = []
        self._exit = contextlib.ExitStack()

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Cluster:
        try:
            self._open()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._exit.close()

    def _open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.store_url = self._exit.enter_context(fresh_database("lamina_chaos"))
        self._exit.callback(self.network.close)
        self.network.open()
        gateway = self.network.gateway
        self._exit.callback(self.redis.stop)
        self.redis.start()
        store = urlsplit(self.store_url)
        self.postgres_forwarder = self._forward(store.hostname or "127.0.0.1", store.port or 5432)
        self.redis_forwarder = self._forward("127.0.0.1", self.redis.port)
        user = f"{store.username}@" if store.username else ""
        node_store = urlunsplit(
            store._replace(netloc=f"{user}{gateway}:{self.postgres_forwarder.port}")
        )
        node_redis = f"redis://{gateway}:{self.redis_forwarder.port}/0"
        # Stopped before the network goes (callbacks run last in, first out).
        self._exit.callback(self._stop_nodes)
        master_key = secrets.token_bytes(MASTER_KEY_BYTES)
        self._env["LAMINA_MASTER_KEY_FILE"] = str(
            _private_file(self.root / "master-key", master_key)
        )
        for index in range(self.count):
            host = self.network.add_host()
            data_dir = self.root / f"node{index}" / "data"
            data_dir.mkdir(parents=True, mode=0o700)
            # Where a node looks by default: every node of a store needs the same key, as
            # an operator copies it to every machine.
            _private_file(data_dir / "master-key", master_key)
            args = [
                "--store",
                node_store,
                "--redis",
                node_redis,
                *self._extra,
                *self._node_args.get(index, ()),
            ]
            self.nodes.append(Node(index, host, data_dir, args, self._env))
        # The first node alone migrates the fresh schema; the others then start together.
        self.nodes[0].start()
        self.nodes[0].wait_ready()
        for node in self.nodes[1:]:
            node.start()
        for node in self.nodes[1:]:
            node.wait_ready()

    def _forward(self, host: str, port: int) -> Forwarder:
        forwarder = Forwarder(self.network.gateway, host, port).start()
        self._forwarders.append(forwarder)
        self._exit.callback(forwarder.close)
        return forwarder

    def _stop_nodes(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()

    # ------------------------------------------------------------------ faults

    def kill(self, index: int) -> None:
        """kill -9 the node and everything it runs."""
        self.nodes[index].kill()

    def restart(self, index: int, timeout: float = 60.0) -> None:
        """Start a stopped or killed node again (same address, same data directory) and wait
        until it answers."""
        node = self.nodes[index]
        if node.alive:
            node.kill()
        node.start()
        node.wait_ready(timeout)

    def cut(self, index: int) -> None:
        """Take the node off the network; it keeps running."""
        self.network.cut(self.nodes[index].host)

    def heal(self, index: int) -> None:
        self.network.heal(self.nodes[index].host)

    def restart_redis(self, timeout: float = 15.0) -> None:
        """Stop Redis and start it again (empty: it keeps nothing on disk); returns once it
        answers."""
        self.redis.restart(timeout)

    @contextlib.contextmanager
    def store_outage(self) -> Iterator[None]:
        """PostgreSQL is unreachable from every node (it keeps running) for the block."""
        self.postgres_forwarder.pause()
        try:
            yield
        finally:
            self.postgres_forwarder.resume()

    # ------------------------------------------------------------------ clients

    def client(self, index: int, service: str = "lambda", **config: Any) -> Any:
        """A boto3 client for one node, from the root namespace; no retries of its own.
        Each from a session of its own: load threads make theirs at once, and boto3's
        default session is not safe to share between threads."""
        config.setdefault("connect_timeout", 2)
        config.setdefault("read_timeout", 30)
        return boto3.session.Session().client(
            service,
            endpoint_url=self.nodes[index].endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"max_attempts": 1, "mode": "standard"}, **config),
        )

    def status(self, index: int) -> dict[str, Any]:
        """`GET /_lamina/cluster` of one node: the live nodes as it sees them, the queue."""
        url = f"{self.nodes[index].endpoint}/_lamina/cluster"
        with urllib.request.urlopen(url, timeout=5) as response:
            document: dict[str, Any] = json.load(response)
        return document

    def node_of(self, address: str) -> int:
        """The index of the node at a namespace address."""
        return next(node.index for node in self.nodes if node.address == address)

    def logs(self) -> str:
        """Every node's log tail, for failure messages."""
        return "\n".join(f"--- node {node.index}\n{node.log_tail()}" for node in self.nodes)
