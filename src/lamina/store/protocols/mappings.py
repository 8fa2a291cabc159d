"""Event source mappings and the per-shard checkpoints of their pollers."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from lamina.model.mappings import EventSourceMapping, ShardCheckpoint
from lamina.store.protocols.transactional import Transactional


class EventSourceMappingStore(Transactional, Protocol):
    """Mappings by UUID, listed in UUID order, with where each stream poller stands.

    A mapping outlives its function (as on AWS): nothing here follows function deletes.
    Writes from the API (`put`, `delete`) and from pollers (`set_state`, `record_result`,
    `put_checkpoint`) may interleave; pollers write only their own columns, so a reader that
    does read-modify-write in a `transaction()` loses neither.
    """

    def get(self, uuid: str) -> EventSourceMapping | None: ...

    def put(self, mapping: EventSourceMapping) -> None:
        """Create or replace the mapping (its state and last result included)."""
        ...

    def delete(self, uuid: str) -> None:
        """The mapping and its checkpoints; nothing happens if it is not there."""
        ...

    def page(
        self,
        after: str | None,
        limit: int,
        *,
        function_name: str | None = None,
        function_arn: str | None = None,
        event_source_arn: str | None = None,
    ) -> list[EventSourceMapping]:
        """Up to `limit` mappings with a UUID after `after`, in UUID order, only those of the
        function `function_name` (any qualifier), of exactly `function_arn`, and of the source
        `event_source_arn`, for the filters given."""
        ...

    def in_states(self, states: Collection[str]) -> list[EventSourceMapping]:
        """Every mapping whose state is one of `states` (transitions a stop interrupted;
        the mappings a poller supervisor runs)."""
        ...

    def set_state(
        self, uuid: str, state: str, reason: str, expected: Collection[str] | None = None
    ) -> bool:
        """Move the mapping to `state` with `reason`, only if its state is one of `expected`
        (any state when None); False when it is not there or its state was not expected."""
        ...

    def record_result(self, uuid: str, result: str) -> None:
        """Set the mapping's LastProcessingResult (a poller's `OK` or `PROBLEM: ...`)."""
        ...

    def checkpoints(self, uuid: str) -> list[ShardCheckpoint]:
        """The mapping's shard checkpoints, by shard id."""
        ...

    def put_checkpoint(self, uuid: str, checkpoint: ShardCheckpoint) -> None:
        """Create or replace the checkpoint of one shard (ignored if the mapping is gone)."""
        ...
