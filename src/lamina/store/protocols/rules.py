"""EventBridge event buses, their rules, the rules' targets and their schedules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from lamina.model.rules import DEFAULT_BUS, EventBus, Rule, Target
from lamina.store.protocols.transactional import Transactional


class RuleStore(Transactional, Protocol):
    """Event buses, rules with their targets, and where each rule's schedule stands.

    A rule is named within its bus (`bus` arguments default to the default bus). The store
    shares the database (and the transactions) of `AsyncQueue`: the scheduler claims a tick
    and queues the invocations it causes in one transaction.
    """

    def change_stamp(self) -> int:
        """A number that moves whenever a bus, a rule or a target changes, whichever process
        changed it (a claimed tick does not move it): caches of compiled rules key on it."""
        ...

    # ------------------------------------------------------------------ buses

    def get_bus(self, name: str) -> EventBus | None: ...
    def put_bus(self, bus: EventBus) -> None:
        """Create or replace the bus (not its rules)."""
        ...

    def delete_bus(self, name: str) -> None:
        """Forget the bus; its rules are the caller's business (AWS refuses while any)."""
        ...

    def buses(self, prefix: str | None, after: str | None, limit: int) -> list[EventBus]:
        """Buses by name, from after `after`, whose names start with `prefix` (literally)."""
        ...

    def has_rules(self, bus: str) -> bool: ...

    # ------------------------------------------------------------------ rules

    def get(self, name: str, bus: str = DEFAULT_BUS) -> Rule | None: ...
    def put(self, rule: Rule) -> None:
        """Create or replace the rule on `rule.bus`, its `next_fire_at` included (not
        `last_fired`)."""
        ...

    def delete(self, name: str, bus: str = DEFAULT_BUS) -> None:
        """The rule and its targets."""
        ...

    def page(
        self, prefix: str | None, after: str | None, limit: int, bus: str = DEFAULT_BUS
    ) -> list[Rule]: ...

    def targets(self, rule: str, bus: str = DEFAULT_BUS) -> list[Target]: ...
    def put_targets(self, rule: str, targets: Sequence[Target], bus: str = DEFAULT_BUS) -> None: ...
    def remove_targets(self, rule: str, ids: Sequence[str], bus: str = DEFAULT_BUS) -> None: ...
    def rules_with_target(
        self, arn: str, after: str | None, limit: int, bus: str = DEFAULT_BUS
    ) -> list[str]: ...

    def pattern_rules(self) -> list[tuple[Rule, list[Target]]]:
        """Every rule with an event pattern, on every bus, with its targets (by Id)."""
        ...

    # ------------------------------------------------------------------ schedules

    def due(self, now: int, limit: int) -> list[Rule]:
        """Rules whose next tick is at or before `now`, the longest overdue first."""
        ...

    def next_due(self) -> int | None:
        """The earliest next tick of any rule."""
        ...

    def claim(
        self, name: str, expected: int, tick: int, next_fire_at: int | None, bus: str = DEFAULT_BUS
    ) -> bool:
        """Record `tick` as fired and move on to `next_fire_at`, if the rule's next tick is
        still `expected`; False when another scheduler or a change got there first."""
        ...
