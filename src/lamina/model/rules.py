"""Event buses, rules and targets as Lamina keeps them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lamina.arns import Account

ENABLED = "ENABLED"
DISABLED = "DISABLED"
DEFAULT_BUS = "default"


def rule_arn(account: Account, name: str, bus: str = DEFAULT_BUS) -> str:
    """`rule/NAME` on the default bus, `rule/BUS/NAME` on any other (as AWS writes them)."""
    path = name if bus == DEFAULT_BUS else f"{bus}/{name}"
    return f"arn:aws:events:{account.region}:{account.account_id}:rule/{path}"


def bus_arn(account: Account, name: str) -> str:
    return f"arn:aws:events:{account.region}:{account.account_id}:event-bus/{name}"


@dataclass(frozen=True)
class EventBus:
    """An event bus: the default one, or a custom bus made by CreateEventBus."""

    name: str
    created: float  # epoch seconds
    modified: float
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    # Accepted and returned as sent; Lamina does not act on them (no KMS, no bus DLQ or logs).
    extras: dict[str, Any] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return {
            "Created": self.created,
            "Modified": self.modified,
            "Description": self.description,
            "Tags": self.tags,
            "Extras": self.extras,
        }

    @classmethod
    def from_doc(cls, name: str, doc: dict[str, Any]) -> EventBus:
        return cls(
            name=name,
            created=float(doc.get("Created", 0.0)),
            modified=float(doc.get("Modified", 0.0)),
            description=doc.get("Description"),
            tags=dict(doc.get("Tags") or {}),
            extras=dict(doc.get("Extras") or {}),
        )


@dataclass(frozen=True)
class Rule:
    """An EventBridge rule on one event bus, with where its schedule stands."""

    name: str
    schedule_expression: str | None = None
    event_pattern: str | None = None
    state: str = ENABLED
    description: str | None = None
    role_arn: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    # When the schedule was set (epoch seconds, on a minute): rates count from here.
    anchor: int = 0
    # Scheduling state, kept in columns of their own: the next tick due (None: it does not
    # fire) and the last tick claimed.
    next_fire_at: int | None = None
    last_fired: int | None = None
    # The bus the rule belongs to; scheduled rules live on the default bus only, as on AWS.
    bus: str = DEFAULT_BUS

    @property
    def enabled(self) -> bool:
        # ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS is enabled too.
        return self.state != DISABLED

    def to_doc(self) -> dict[str, Any]:
        return {
            "ScheduleExpression": self.schedule_expression,
            "EventPattern": self.event_pattern,
            "State": self.state,
            "Description": self.description,
            "RoleArn": self.role_arn,
            "Tags": self.tags,
            "Anchor": self.anchor,
        }

    @classmethod
    def from_doc(
        cls,
        name: str,
        doc: dict[str, Any],
        next_fire_at: int | None,
        last_fired: int | None,
        bus: str = DEFAULT_BUS,
    ) -> Rule:
        return cls(
            name=name,
            schedule_expression=doc.get("ScheduleExpression"),
            event_pattern=doc.get("EventPattern"),
            state=doc.get("State", ENABLED),
            description=doc.get("Description"),
            role_arn=doc.get("RoleArn"),
            tags=dict(doc.get("Tags") or {}),
            anchor=int(doc.get("Anchor", 0)),
            next_fire_at=next_fire_at,
            last_fired=last_fired,
            bus=bus,
        )


@dataclass(frozen=True)
class Target:
    """One target of a rule: every member the client sent, returned as it was sent."""

    id: str
    arn: str
    doc: dict[str, Any]

    @property
    def input(self) -> str | None:
        value = self.doc.get("Input")
        return value if isinstance(value, str) else None

    @property
    def input_path(self) -> str | None:
        value = self.doc.get("InputPath")
        return value if isinstance(value, str) else None

    @property
    def input_transformer(self) -> dict[str, Any] | None:
        value = self.doc.get("InputTransformer")
        return value if isinstance(value, dict) else None
