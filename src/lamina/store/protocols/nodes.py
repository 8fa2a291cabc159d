"""The cluster's node registry: who is alive, where it answers, and what it holds right now.

Soft state: each node writes its own report at every heartbeat and the entry lapses by itself
when the heartbeats stop, so a dead node drops out without anyone deciding it. An epoch,
strictly increasing across the cluster, tells one registration of a node from the next: a
node whose entry lapsed (a pause, a cut link) must join again and so gets a higher epoch,
which is what fences the work it started under the old one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from lamina.store.errors import StorageError


@dataclass(frozen=True)
class NodeReport:
    """What a node says of itself at each heartbeat."""

    node_id: str  # stable for the process (server.node_name(settings))
    address: str  # base URL where the other nodes reach it (settings.node_url)
    worker: bool  # runs execution environments (False: an API-only frontend)
    epoch: int = 0  # given by join(); strictly increasing cluster-wide
    started_at: float = 0.0
    heartbeat_at: float = 0.0  # set by the registry (time.time() at write)
    capacity_mb: int = 0
    memory_used_mb: int = 0  # memory of this node's environments (idle + busy)
    environments: int = 0
    in_flight: int = 0
    # "function:version" -> idle on-demand environments.
    idle: Mapping[str, int] = field(default_factory=dict)
    # "function:version" -> idle provisioned environments.
    provisioned: Mapping[str, int] = field(default_factory=dict)


class NodesUnavailable(StorageError):
    """The registry did not answer: nothing was written, and its view is unknown."""


class NodeRegistry(Protocol):
    """Live nodes of one cluster, each entry lapsing unless its node heartbeats."""

    def join(self, report: NodeReport) -> int:
        """Register `report` (its epoch ignored) under a new epoch, higher than any given
        before, and return that epoch. The entry lapses unless heartbeats follow.
        Raises NodesUnavailable."""
        ...

    def heartbeat(self, report: NodeReport) -> bool:
        """Rewrite the node's entry and extend it, if it still holds `report.epoch`.
        False: the entry lapsed or a later join superseded it, and nothing was written
        (join again). Raises NodesUnavailable."""
        ...

    def nodes(self) -> list[NodeReport]:
        """The live nodes, in any order, each with its epoch and heartbeat_at.
        Raises NodesUnavailable."""
        ...

    def leave(self, node_id: str) -> None:
        """Remove the node's entry now rather than at its lapse. Raises NodesUnavailable."""
        ...

    def close(self) -> None: ...
