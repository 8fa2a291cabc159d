"""EventBridge rules, their targets and their schedules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from lamina.model.rules import Rule, Target
from lamina.store.protocols.transactional import Transactional


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
