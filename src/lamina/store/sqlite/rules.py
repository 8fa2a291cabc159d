"""Event buses, their rules and the rules' targets in SQLite.

Writes go to the connection directly rather than through `Database.execute`, whose change
counter tells function-configuration caches to re-read: neither a rule change nor a fired
tick changes a function. Rule changes move a stamp of their own instead, a row in the
database (so that another process sharing the file sees them too), in the same transaction.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from lamina.model.rules import DEFAULT_BUS, EventBus, Rule, Target
from lamina.store.sqlite.database import Database, dumps, loads

log = logging.getLogger("lamina.store")

_RULE_COLUMNS = "name, doc, next_fire_at, last_fired, bus"
_BUMP = "UPDATE event_bus_stamp SET stamp = stamp + 1 WHERE id = 1"


def _rule(row: Sequence[Any]) -> Rule:
    return Rule.from_doc(row[0], loads(row[1]), row[2], row[3], row[4])


class SqliteRuleStore:
    def __init__(self, database: Database) -> None:
        self._db = database
        self._adopt_legacy_rules()

    def transaction(self) -> AbstractContextManager[Any]:
        return self._db.transaction()

    def _change(self, sql: str, *params: Any) -> int:
        """One statement that changes buses, rules or targets, with the stamp moved."""
        with self._db.transaction() as connection:
            count = connection.execute(sql, params).rowcount
            connection.execute(_BUMP)
            return count

    def _change_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._db.transaction() as connection:
            connection.executemany(sql, rows)
            connection.execute(_BUMP)

    def change_stamp(self) -> int:
        return int(self._db.query_one("SELECT stamp FROM event_bus_stamp WHERE id = 1") or 0)

    # ------------------------------------------------------------------ buses

    def get_bus(self, name: str) -> EventBus | None:
        raw = self._db.query_one("SELECT doc FROM event_buses WHERE name = ?", name)
        return EventBus.from_doc(name, loads(raw)) if raw else None

    def put_bus(self, bus: EventBus) -> None:
        self._change(
            "INSERT INTO event_buses (name, doc) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET doc = excluded.doc",
            bus.name,
            dumps(bus.to_doc()),
        )

    def delete_bus(self, name: str) -> None:
        self._change("DELETE FROM event_buses WHERE name = ?", name)

    def buses(self, prefix: str | None, after: str | None, limit: int) -> list[EventBus]:
        # Prefixes are compared with substr, not LIKE, whose `_` would match any character.
        prefix = prefix or ""
        rows = self._db.query(
            "SELECT name, doc FROM event_buses "
            "WHERE substr(name, 1, ?) = ? AND name > ? ORDER BY name LIMIT ?",
            len(prefix),
            prefix,
            after or "",
            limit,
        )
        return [EventBus.from_doc(row[0], loads(row[1])) for row in rows]

    def has_rules(self, bus: str) -> bool:
        row = self._db.query_one("SELECT 1 FROM event_bus_rules WHERE bus = ? LIMIT 1", bus)
        return row is not None

    # ------------------------------------------------------------------ rules

    def get(self, name: str, bus: str = DEFAULT_BUS) -> Rule | None:
        rows = self._db.query(
            f"SELECT {_RULE_COLUMNS} FROM event_bus_rules WHERE bus = ? AND name = ?", bus, name
        )
        return _rule(rows[0]) if rows else None

    def put(self, rule: Rule) -> None:
        self._change(
            "INSERT INTO event_bus_rules (bus, name, doc, has_pattern, next_fire_at) "
            "VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (bus, name) DO UPDATE SET doc = excluded.doc, "
            "has_pattern = excluded.has_pattern, next_fire_at = excluded.next_fire_at",
            rule.bus,
            rule.name,
            dumps(rule.to_doc()),
            int(rule.event_pattern is not None),
            rule.next_fire_at,
        )

    def delete(self, name: str, bus: str = DEFAULT_BUS) -> None:
        with self._db.transaction() as connection:
            connection.execute(
                "DELETE FROM event_bus_targets WHERE bus = ? AND rule = ?", (bus, name)
            )
            connection.execute(
                "DELETE FROM event_bus_rules WHERE bus = ? AND name = ?", (bus, name)
            )
            connection.execute(_BUMP)

    def page(
        self, prefix: str | None, after: str | None, limit: int, bus: str = DEFAULT_BUS
    ) -> list[Rule]:
        prefix = prefix or ""
        rows = self._db.query(
            f"SELECT {_RULE_COLUMNS} FROM event_bus_rules "
            "WHERE bus = ? AND substr(name, 1, ?) = ? AND name > ? ORDER BY name LIMIT ?",
            bus,
            len(prefix),
            prefix,
            after or "",
            limit,
        )
        return [_rule(row) for row in rows]

    def targets(self, rule: str, bus: str = DEFAULT_BUS) -> list[Target]:
        rows = self._db.query(
            "SELECT id, arn, doc FROM event_bus_targets WHERE bus = ? AND rule = ? ORDER BY id",
            bus,
            rule,
        )
        return [Target(row[0], row[1], loads(row[2])) for row in rows]

    def put_targets(self, rule: str, targets: Sequence[Target], bus: str = DEFAULT_BUS) -> None:
        self._change_many(
            "INSERT OR REPLACE INTO event_bus_targets (bus, rule, id, arn, doc) "
            "VALUES (?, ?, ?, ?, ?)",
            [(bus, rule, target.id, target.arn, dumps(target.doc)) for target in targets],
        )

    def remove_targets(self, rule: str, ids: Sequence[str], bus: str = DEFAULT_BUS) -> None:
        self._change_many(
            "DELETE FROM event_bus_targets WHERE bus = ? AND rule = ? AND id = ?",
            [(bus, rule, target_id) for target_id in ids],
        )

    def rules_with_target(
        self, arn: str, after: str | None, limit: int, bus: str = DEFAULT_BUS
    ) -> list[str]:
        rows = self._db.query(
            "SELECT DISTINCT rule FROM event_bus_targets WHERE bus = ? AND arn = ? AND rule > ? "
            "ORDER BY rule LIMIT ?",
            bus,
            arn,
            after or "",
            limit,
        )
        return [row[0] for row in rows]

    def pattern_rules(self) -> list[tuple[Rule, list[Target]]]:
        # Two reads, one snapshot: a change between them could pair a rule with targets of
        # another moment, and the caller keys what it builds on the stamp read before.
        with self._db.transaction():
            rules = [
                _rule(row)
                for row in self._db.query(
                    f"SELECT {_RULE_COLUMNS} FROM event_bus_rules WHERE has_pattern = 1 "
                    "ORDER BY bus, name"
                )
            ]
            targets: dict[tuple[str, str], list[Target]] = {}
            for row in self._db.query(
                "SELECT t.bus, t.rule, t.id, t.arn, t.doc FROM event_bus_targets t "
                "JOIN event_bus_rules r ON r.bus = t.bus AND r.name = t.rule "
                "WHERE r.has_pattern = 1 ORDER BY t.bus, t.rule, t.id"
            ):
                targets.setdefault((row[0], row[1]), []).append(
                    Target(row[2], row[3], loads(row[4]))
                )
        return [(rule, targets.get((rule.bus, rule.name), [])) for rule in rules]

    # ------------------------------------------------------------------ schedules

    def due(self, now: int, limit: int) -> list[Rule]:
        rows = self._db.query(
            f"SELECT {_RULE_COLUMNS} FROM event_bus_rules "
            "WHERE next_fire_at IS NOT NULL AND next_fire_at <= ? ORDER BY next_fire_at LIMIT ?",
            now,
            limit,
        )
        return [_rule(row) for row in rows]

    def next_due(self) -> int | None:
        value = self._db.query_one(
            "SELECT min(next_fire_at) FROM event_bus_rules WHERE next_fire_at IS NOT NULL"
        )
        return int(value) if value is not None else None

    def claim(
        self, name: str, expected: int, tick: int, next_fire_at: int | None, bus: str = DEFAULT_BUS
    ) -> bool:
        # A compare-and-set on the next tick: of two schedulers (or a scheduler and a PutRule)
        # only one moves it, so a tick is claimed once. It leaves the change stamp alone.
        with self._db.transaction() as connection:
            claimed = connection.execute(
                "UPDATE event_bus_rules SET next_fire_at = ?, last_fired = ? "
                "WHERE bus = ? AND name = ? AND next_fire_at = ?",
                (next_fire_at, tick, bus, name, expected),
            ).rowcount
        return bool(claimed == 1)

    # ------------------------------------------------------------------ migration

    def _adopt_legacy_rules(self) -> None:
        """Rules kept before buses existed (tables `event_rules`, `event_rule_targets`)
        move to the default bus once; the old tables are then dropped."""
        with self._db.transaction() as connection:
            if not _table_exists(connection, "event_rules"):
                return
            connection.execute(
                "INSERT OR IGNORE INTO event_bus_rules "
                "(bus, name, doc, has_pattern, next_fire_at, last_fired) "
                "SELECT ?, name, doc, "
                "json_extract(CAST(doc AS TEXT), '$.EventPattern') IS NOT NULL, "
                "next_fire_at, last_fired FROM event_rules",
                (DEFAULT_BUS,),
            )
            if _table_exists(connection, "event_rule_targets"):
                connection.execute(
                    "INSERT OR IGNORE INTO event_bus_targets (bus, rule, id, arn, doc) "
                    "SELECT ?, rule, id, arn, doc FROM event_rule_targets",
                    (DEFAULT_BUS,),
                )
                connection.execute("DROP TABLE event_rule_targets")
            connection.execute("DROP TABLE event_rules")
            connection.execute(_BUMP)
        log.info("moved the rules kept before event buses existed to the default bus")


def _table_exists(connection: sqlite3.Connection, name: str) -> bool:
    row = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None
