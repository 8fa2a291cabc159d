"""A cluster of real `lamina serve` processes for the cluster benchmark.

One database of its own on the machine's PostgreSQL (LAMINA_BENCH_PG names the server's
admin URL), the machine's Redis (LAMINA_BENCH_REDIS), nodes added one at a time on free
ports. Leaving the `with` block, whatever ended it (an error, Ctrl-C), stops every node,
deletes the cluster's keys in Redis and drops the database.
"""

from __future__ import annotations

import json
import os
import urllib.request
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

from lamina.store.postgres.database import PgDatabase
from lamina.store.postgres.secrets import PgSharedSecrets

ADMIN_URL = os.environ.get("LAMINA_BENCH_PG", "postgresql://postgres@127.0.0.1/test")
REDIS_URL = os.environ.get("LAMINA_BENCH_REDIS", "redis://127.0.0.1:6379/0")


class BenchCluster:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self._root = root
        # One key for every node: environment variables are sealed under it at rest.
        self._env = {"LAMINA_MASTER_KEY_FILE": str(root / "master-key"), **env}
        self.database = f"lamina_bench_{uuid.uuid4().hex[:12]}"
        self.store_url = urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{self.database}"))
        self.nodes: list[LaminaServer] = []
        self.workers: list[LaminaServer] = []
        self._redis_prefix: str | None = None

    def __enter__(self) -> BenchCluster:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for node in self.nodes:
            node.stop()
        if self._redis_prefix is not None:
            with redis.Redis.from_url(REDIS_URL) as client:
                keys = list(client.scan_iter(match=f"{self._redis_prefix}*"))
                if keys:
                    client.delete(*keys)
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.database)
                )
            )

    def add(self, *, worker: bool = True) -> LaminaServer:
        """Start one more node and wait until every live node counts it."""
        server = LaminaServer(self._root / f"node{len(self.nodes) + 1}", env=self._env)
        self.nodes.append(server)  # before it starts: stopped on exit even if it fails
        role = [] if worker else ["--no-worker"]
        server.start("--store", self.store_url, "--redis", REDIS_URL, *role, timeout=30)
        if worker:
            self.workers.append(server)
        if self._redis_prefix is None:
            self._redis_prefix = f"lamina:{self._cluster_id()}:"
        live = self.live()
        wait_until(
            lambda: all(len(self.status(node)["nodes"]) == len(live) for node in live),
            timeout=15,
            message="the nodes never all saw each other",
        )
        return server

    def live(self) -> list[LaminaServer]:
        return [node for node in self.nodes if node.process and node.process.poll() is None]

    def _cluster_id(self) -> str:
        """The id that prefixes this cluster's keys in Redis (server.open_postgres_store)."""
        database = PgDatabase(self.store_url)
        try:
            return PgSharedSecrets(database).secret("cluster").hex()[:16]
        finally:
            database.close()

    @staticmethod
    def status(node: LaminaServer) -> dict[str, Any]:
        """`GET /_lamina/cluster` of `node`."""
        with urllib.request.urlopen(f"{node.endpoint}/_lamina/cluster", timeout=5) as response:
            document: dict[str, Any] = json.loads(response.read())
        return document

    def node_id(self, node: LaminaServer) -> str:
        return str(next(row["node_id"] for row in self.status(node)["nodes"] if row["this"]))
