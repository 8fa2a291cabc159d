"""EventBridge rules and their targets in SQLite.

Writes go to the connection directly rather than through `Database.execute`, whose change
counter tells function-configuration caches to re-read: a fired tick changes no function.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from lamina.model.rules import Rule, Target
from lamina.store.sqlite.database import Database, dumps, loads

_RULE_COLUMNS = "name, doc, next_fire_at, last_fired"


def _rule(row: Sequence[Any]) -> Rule:
    return Rule.from_doc(row[0], loads(row[1]), row[2], row[3])


class SqliteRuleStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    def transaction(self) -> AbstractContextManager[Any]:
        return self._db.transaction()

    def _write(self, sql: str, *params: Any) -> int:
        with self._db.transaction() as connection:
            return connection.execute(sql, params).rowcount

    def get(self, name: str) -> Rule | None:
        rows = self._db.query(f"SELECT {_RULE_COLUMNS} FROM event_rules WHERE name = ?", name)
        return _rule(rows[0]) if rows else None

    def put(self, rule: Rule) -> None:
        self._write(
            "INSERT INTO event_rules (name, doc, next_fire_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET doc = excluded.doc, "
            "next_fire_at = excluded.next_fire_at",
            rule.name,
            dumps(rule.to_doc()),
            rule.next_fire_at,
        )

    def delete(self, name: str) -> None:
        with self._db.transaction() as connection:
            connection.execute("DELETE FROM event_rule_targets WHERE rule = ?", (name,))
            connection.execute("DELETE FROM event_rules WHERE name = ?", (name,))

    def page(self, prefix: str | None, after: str | None, limit: int) -> list[Rule]:
        # Prefixes are compared with substr, not LIKE, whose `_` would match any character.
        prefix = prefix or ""
        rows = self._db.query(
            f"SELECT {_RULE_COLUMNS} FROM event_rules "
            "WHERE substr(name, 1, ?) = ? AND name > ? ORDER BY name LIMIT ?",
            len(prefix),
            prefix,
            after or "",
            limit,
        )
        return [_rule(row) for row in rows]

    def targets(self, rule: str) -> list[Target]:
        rows = self._db.query(
            "SELECT id, arn, doc FROM event_rule_targets WHERE rule = ? ORDER BY id", rule
        )
        return [Target(row[0], row[1], loads(row[2])) for row in rows]

    def put_targets(self, rule: str, targets: Sequence[Target]) -> None:
        with self._db.transaction() as connection:
            connection.executemany(
                "INSERT OR REPLACE INTO event_rule_targets (rule, id, arn, doc) "
                "VALUES (?, ?, ?, ?)",
                [(rule, target.id, target.arn, dumps(target.doc)) for target in targets],
            )

    def remove_targets(self, rule: str, ids: Sequence[str]) -> None:
        with self._db.transaction() as connection:
            connection.executemany(
                "DELETE FROM event_rule_targets WHERE rule = ? AND id = ?",
                [(rule, target_id) for target_id in ids],
            )

    def rules_with_target(self, arn: str, after: str | None, limit: int) -> list[str]:
        rows = self._db.query(
            "SELECT DISTINCT rule FROM event_rule_targets WHERE arn = ? AND rule > ? "
            "ORDER BY rule LIMIT ?",
            arn,
            after or "",
            limit,
        )
        return [row[0] for row in rows]

    def due(self, now: int, limit: int) -> list[Rule]:
        rows = self._db.query(
            f"SELECT {_RULE_COLUMNS} FROM event_rules "
            "WHERE next_fire_at IS NOT NULL AND next_fire_at <= ? ORDER BY next_fire_at LIMIT ?",
            now,
            limit,
        )
        return [_rule(row) for row in rows]

    def next_due(self) -> int | None:
        value = self._db.query_one(
            "SELECT min(next_fire_at) FROM event_rules WHERE next_fire_at IS NOT NULL"
        )
        return int(value) if value is not None else None

    def claim(self, name: str, expected: int, tick: int, next_fire_at: int | None) -> bool:
        # A compare-and-set on the next tick: of two schedulers (or a scheduler and a PutRule)
        # only one moves it, so a tick is claimed once.
        claimed = self._write(
            "UPDATE event_rules SET next_fire_at = ?, last_fired = ? "
            "WHERE name = ? AND next_fire_at = ?",
            next_fire_at,
            tick,
            name,
            expected,
        )
        return claimed == 1
