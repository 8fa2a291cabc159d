"""The storage seams: one protocol per aggregate, plus the blob store for archives."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lamina.control.model import (
    Alias,
    CodeSigningConfig,
    FunctionConfig,
    FunctionRecord,
    LayerVersion,
)
from lamina.schedules.model import Rule, Target


class Transactional(Protocol):
    def transaction(self) -> AbstractContextManager[None]:
        """Serialise a read-modify-write; nested calls join the outer transaction."""
        ...


class FunctionStore(Transactional, Protocol):
    """Functions with their versions, aliases and per-qualifier child documents."""

    def change_stamp(self) -> int:
        """A number that changes whenever anything stored here changes (for caches)."""
        ...

    def get(self, name: str) -> FunctionRecord | None: ...
    def put(self, record: FunctionRecord) -> None: ...
    def delete(self, name: str) -> None: ...
    def page(self, after: str | None, limit: int) -> list[FunctionRecord]: ...
    def count(self) -> int: ...
    def names(self) -> Iterator[str]: ...

    def get_version(self, name: str, version: int) -> FunctionConfig | None: ...
    def put_version(self, config: FunctionConfig) -> None: ...
    def delete_version(self, name: str, version: int) -> None: ...
    def list_versions(self, name: str, after: int | None, limit: int) -> list[FunctionConfig]: ...

    def get_alias(self, name: str, alias: str) -> Alias | None: ...
    def put_alias(self, alias: Alias) -> None: ...
    def delete_alias(self, name: str, alias: str) -> None: ...
    def list_aliases(self, name: str) -> list[Alias]: ...

    # Child documents hang off a function per qualifier: policies, URL configs,
    # event-invoke configs, provisioned concurrency, runtime management.
    def get_child(self, name: str, kind: str, key: str) -> dict[str, Any] | None: ...
    def put_child(self, name: str, kind: str, key: str, doc: dict[str, Any]) -> None: ...
    def delete_child(self, name: str, kind: str, key: str) -> None: ...
    def list_children(self, name: str, kind: str) -> list[tuple[str, dict[str, Any]]]: ...
    def list_children_of_kind(self, kind: str) -> list[tuple[str, str, dict[str, Any]]]: ...

    def total_code_size(self) -> int: ...


class LayerStore(Transactional, Protocol):
    """Layer versions; numbers are never reused, even after a version is deleted."""

    def last_version(self, name: str) -> int: ...
    def set_last_version(self, name: str, version: int) -> None: ...
    def get_version(self, name: str, version: int) -> LayerVersion | None: ...
    def put_version(self, layer: LayerVersion) -> None: ...
    def delete_version(self, name: str, version: int) -> None: ...
    def list_versions(self, name: str) -> list[LayerVersion]: ...
    def latest_versions(self) -> list[LayerVersion]: ...
    def total_code_size(self) -> int: ...


class CodeSigningConfigStore(Transactional, Protocol):
    def get(self, config_id: str) -> CodeSigningConfig | None: ...
    def put(self, config: CodeSigningConfig) -> None: ...
    def delete(self, config_id: str) -> None: ...
    def all(self) -> list[CodeSigningConfig]: ...


@dataclass(frozen=True)
class AsyncEvent:
    """One accepted asynchronous event, as the durable queue holds it."""

    event_id: str  # the request id the caller saw; kept across retries, as on AWS
    function: str
    qualifier: str | None
    payload: bytes
    enqueued_at: float  # epoch seconds
    next_attempt_at: float
    state: str = "queued"  # queued, in_flight or failed (see EVENT_STATES)
    attempts: int = 0  # invocations that ended in a function error
    requeues: int = 0  # throttles, platform and delivery errors since the last phase change
    hops: int = 0  # destinations between this event and the caller's (recursion guard)
    last_error: str | None = None
    # Set once the outcome is known and sends to destinations/DLQ remain (JSON list).
    deliveries: bytes | None = None

    @property
    def retrying(self) -> bool:
        return self.state == "queued" and bool(
            self.attempts or self.requeues or self.deliveries is not None
        )


# What `lamina events` shows: a queued event that has been tried before is "retrying".
EVENT_STATES = ("queued", "retrying", "in_flight", "failed")


class AsyncQueue(Transactional, Protocol):
    """The durable queue behind asynchronous invocation: append, lease, settle.

    Every method commits before it returns unless it runs inside `transaction()`, which
    callers use to settle one event and enqueue another atomically, or to group-commit.
    """

    def enqueue(self, events: Sequence[AsyncEvent]) -> None: ...

    def claim(self, owner: str, now: float, limit: int, lease_s: float) -> list[AsyncEvent]:
        """Lease up to `limit` events due by `now` to `owner`, oldest due first."""
        ...

    def renew(self, owner: str, until: float) -> int:
        """Extend every lease `owner` holds; returns how many it holds."""
        ...

    def complete(self, event_id: str, owner: str) -> None:
        """The event reached its end (success, destination or DLQ): forget it."""
        ...

    def retry(
        self,
        event_id: str,
        owner: str,
        next_attempt_at: float,
        attempts: int,
        requeues: int,
        last_error: str | None,
        deliveries: bytes | None = None,
    ) -> None:
        """Give the event back to the queue, due again at `next_attempt_at`."""
        ...

    def fail(self, event_id: str, owner: str, reason: str) -> None:
        """Terminal: nothing more can be done; kept (state failed) so people can see it."""
        ...

    def release(self, owner: str) -> int:
        """Hand back every event `owner` holds, due now (a clean shutdown)."""
        ...

    def recover(self, now: float) -> int:
        """Hand back events whose lease expired (their holder crashed); returns how many."""
        ...

    def counts(self, function: str | None = None) -> dict[str, dict[str, int]]:
        """function -> {state: count} over EVENT_STATES."""
        ...

    def events(self, function: str, limit: int = 50) -> list[AsyncEvent]:
        """The function's events, failed ones first, then by when they are due."""
        ...


class RuleStore(Transactional, Protocol):
    """EventBridge rules with their targets and where each rule's schedule stands.

    It shares the database (and the transactions) of `AsyncQueue`: the scheduler claims a
    tick and queues the invocations it causes in one transaction.
    """

    def get(self, name: str) -> Rule | None: ...
    def put(self, rule: Rule) -> None:
        """Create or replace the rule, its `next_fire_at` included (not `last_fired`)."""
        ...

    def delete(self, name: str) -> None: ...
    def page(self, prefix: str | None, after: str | None, limit: int) -> list[Rule]: ...

    def targets(self, rule: str) -> list[Target]: ...
    def put_targets(self, rule: str, targets: Sequence[Target]) -> None: ...
    def remove_targets(self, rule: str, ids: Sequence[str]) -> None: ...
    def rules_with_target(self, arn: str, after: str | None, limit: int) -> list[str]: ...

    def due(self, now: int, limit: int) -> list[Rule]:
        """Rules whose next tick is at or before `now`, the longest overdue first."""
        ...

    def next_due(self) -> int | None:
        """The earliest next tick of any rule."""
        ...

    def claim(self, name: str, expected: int, tick: int, next_fire_at: int | None) -> bool:
        """Record `tick` as fired and move on to `next_fire_at`, if the rule's next tick is
        still `expected`; False when another scheduler or a change got there first."""
        ...


class BlobStore(Protocol):
    """Content-addressed archives (function code, layers), keyed by SHA-256 hex."""

    def put(self, data: bytes, key: str | None = None) -> str: ...
    def get(self, key: str) -> bytes: ...
    def path(self, key: str) -> Path: ...
    def exists(self, key: str) -> bool: ...


@dataclass(frozen=True)
class Stores:
    """Every store one Lamina process uses, built once and passed down."""

    functions: FunctionStore
    layers: LayerStore
    code_signing: CodeSigningConfigStore
    blobs: BlobStore
    queue: AsyncQueue
    rules: RuleStore
