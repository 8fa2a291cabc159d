"""This node's place in the cluster: it joins the node registry, heartbeats its load, and keeps
a view of the live nodes that routing and placement read without waiting on Redis.

The view is refreshed at every heartbeat and at least every half heartbeat, so a node that
died stops being offered calls within about its expiry plus half a heartbeat. A caller that
cannot connect to a node marks it suspect, which keeps it out of `workers()` until it
heartbeats again, sooner than its entry lapses.

Registry calls block (redis-py), so they run on a thread of their own: a busy default
executor must not delay a heartbeat until the node looks dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TypeVar

from lamina.store.errors import StorageError
from lamina.store.protocols.nodes import NodeRegistry, NodeReport

log = logging.getLogger(__name__)

T = TypeVar("T")


class Membership:
    """This node's registration and its view of the cluster's live nodes.

    `report` gives the node's current identity and load (called on the event loop at each
    heartbeat); the epoch and start time are filled in here. Read the view from the event
    loop's thread.
    """

    def __init__(
        self,
        registry: NodeRegistry,
        report: Callable[[], NodeReport],
        heartbeat_s: float,
        expiry_s: float,
    ) -> None:
        self._registry = registry
        self._report = report
        self._heartbeat_s = heartbeat_s
        self._expiry_s = expiry_s
        self._started_at = time.time()
        self._node_id = ""
        self._epoch = 0
        self._view: dict[str, NodeReport] = {}
        # node id -> the heartbeat time it must pass to be trusted again.
        self._suspects: dict[str, float] = {}
        self._worker_ids: frozenset[str] = frozenset()
        self._version = 0
        self._registry_down = False
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="lamina-membership")

    @property
    def node_id(self) -> str:
        """This node's id (from its report; empty before `start`)."""
        return self._node_id

    @property
    def epoch(self) -> int:
        """This node's current registration; 0 while it is not registered."""
        return self._epoch

    @property
    def version(self) -> int:
        """Changes whenever the set of live worker ids (`worker_ids()`) changes."""
        return self._version

    def nodes(self) -> list[NodeReport]:
        """Every live node, frontends and suspects included, by id."""
        return sorted(self._view.values(), key=lambda node: node.node_id)

    def workers(self) -> list[NodeReport]:
        """The live nodes that run environments, suspects left out, by id: where to route."""
        return [node for node in self.nodes() if node.worker and node.node_id not in self._suspects]

    def worker_ids(self) -> list[str]:
        """The live workers' ids, sorted, suspects included: what placement ranks over, so
        that one failed connection does not move provisioned environments."""
        return sorted(self._worker_ids)

    def is_suspect(self, node_id: str) -> bool:
        return node_id in self._suspects

    def suspect(self, node_id: str) -> None:
        """A caller could not connect to `node_id`: leave it out of `workers()` until it
        heartbeats again. Both bounds matter: the view may be half a heartbeat old, and the
        node's clock is not this one's."""
        node = self._view.get(node_id)
        if node is not None and node_id != self._node_id:
            self._suspects[node_id] = max(time.time(), node.heartbeat_at)

    async def start(self) -> None:
        """Join and read the view, then heartbeat in the background. An unreachable registry
        does not stop the start: the node joins when it answers."""
        if self._task is not None:
            raise RuntimeError("membership already started")
        self._node_id = self._report().node_id
        await self._beat()
        await self._refresh()
        self._task = asyncio.create_task(self._run(), name="lamina-membership")

    async def close(self) -> None:
        """Stop heartbeating and leave, so the others stop routing here at once."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._epoch:
            node_id = self._node_id
            try:
                await self._call(lambda: self._registry.leave(node_id))
            except StorageError as error:
                log.warning("node %s could not leave the registry (%s); it lapses", node_id, error)
            self._epoch = 0
        self._executor.shutdown(wait=False)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        half = self._heartbeat_s / 2
        next_beat = loop.time() + self._heartbeat_s
        next_refresh = loop.time() + half
        while True:
            await asyncio.sleep(max(0.0, min(next_beat, next_refresh) - loop.time()))
            try:
                if loop.time() >= next_beat:
                    # Late (a stalled loop, a slow registry): the next beat follows at the
                    # interval rather than in a burst.
                    next_beat = max(next_beat + self._heartbeat_s, loop.time())
                    await self._beat()
                    next_refresh = loop.time()
                if loop.time() >= next_refresh:
                    await self._refresh()
                    next_refresh = loop.time() + half
            except Exception:
                # A node whose loop died would quietly drop out of the cluster: log and go on.
                log.exception("membership heartbeat of node %s failed", self._node_id)

    async def _beat(self) -> None:
        report = replace(
            self._report(), node_id=self._node_id, epoch=self._epoch, started_at=self._started_at
        )
        try:
            if self._epoch:
                if await self._call(lambda: self._registry.heartbeat(report)):
                    self._answered()
                    return
                log.warning(
                    "node %s: registration under epoch %d lapsed or was superseded; joining again",
                    self._node_id,
                    self._epoch,
                )
            epoch = await self._call(lambda: self._registry.join(report))
        except StorageError as error:
            self._failed(error)
            return
        self._answered()
        log.info("node %s joined the cluster under epoch %d", self._node_id, epoch)
        self._epoch = epoch

    async def _refresh(self) -> None:
        try:
            nodes = await self._call(self._registry.nodes)
        except StorageError as error:
            self._failed(error)
            # Keep what was seen, less what would have lapsed by now.
            cutoff = time.time() - self._expiry_s
            nodes = [node for node in self._view.values() if node.heartbeat_at >= cutoff]
        else:
            self._answered()
        self._set_view(nodes)

    def _set_view(self, nodes: list[NodeReport]) -> None:
        view = {node.node_id: node for node in nodes}
        # A suspect is trusted again once it heartbeats after the suspicion; forgotten once gone.
        self._suspects = {
            node_id: since
            for node_id, since in self._suspects.items()
            if node_id in view and view[node_id].heartbeat_at <= since
        }
        self._view = view
        worker_ids = frozenset(node.node_id for node in nodes if node.worker)
        if worker_ids != self._worker_ids:
            self._worker_ids = worker_ids
            self._version += 1

    def _failed(self, error: StorageError) -> None:
        if not self._registry_down:
            self._registry_down = True
            log.warning(
                "node registry unreachable (%s): node %s keeps its last view of the cluster "
                "until it answers",
                error,
                self._node_id,
            )

    def _answered(self) -> None:
        if self._registry_down:
            self._registry_down = False
            log.info("node registry answers again")

    async def _call(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)
