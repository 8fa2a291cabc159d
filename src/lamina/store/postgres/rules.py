"""Event buses, their rules and the rules' targets in PostgreSQL.

Rule changes move a stamp of their own (a one-row table, bumped in the transaction of the
change, so every node sees it move when the change commits); a claimed tick does not move
it. Names compare bytewise (`COLLATE "C"`), as SQLite compares them, whatever the
database's locale: paging and prefixes then agree between the backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from lamina.model.rules import DEFAULT_BUS, EventBus, Rule, Target
from lamina.store.postgres.database import PgDatabase, dumps, loads

MIGRATIONS = {
    1: """
CREATE TABLE IF NOT EXISTS event_buses (
    name text COLLATE "C" PRIMARY KEY,
    doc bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS event_bus_rules (
    bus text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    doc bytea NOT NULL,
    has_pattern boolean NOT NULL DEFAULT false,
    next_fire_at bigint,
    last_fired bigint,
    PRIMARY KEY (bus, name)
);
CREATE INDEX IF NOT EXISTS event_bus_rules_due
    ON event_bus_rules (next_fire_at) WHERE next_fire_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS event_bus_rules_patterns
    ON event_bus_rules (bus, name) WHERE has_pattern;
CREATE TABLE IF NOT EXISTS event_bus_targets (
    bus text COLLATE "C" NOT NULL,
    rule text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    arn text COLLATE "C" NOT NULL,
    doc bytea NOT NULL,
    PRIMARY KEY (bus, rule, id)
);
CREATE INDEX IF NOT EXISTS event_bus_targets_arn ON event_bus_targets (bus, arn, rule);
CREATE TABLE IF NOT EXISTS event_bus_stamp (
    id integer PRIMARY KEY CHECK (id = 1),
    stamp bigint NOT NULL
);
INSERT INTO event_bus_stamp (id, stamp) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
""",
}

_RULE_COLUMNS = "name, doc, next_fire_at, last_fired, bus"
_BUMP = "UPDATE event_bus_stamp SET stamp = stamp + 1 WHERE id = 1"


def _rule(row: Sequence[Any]) -> Rule:
    return Rule.from_doc(row[0], loads(row[1]), row[2], row[3], row[4])


class PgRuleStore:
    def __init__(self, database: PgDatabase) -> None:
        self._db = database
        database.migrate("rules", MIGRATIONS)

    def transaction(self) -> AbstractContextManager[Any]:
        # Exclusive: a caller's read-modify-write (the API's) is serialised across nodes.
        return self._db.transaction()

    def _change(self, sql: str, *params: Any) -> int:
        """One statement that changes buses, rules or targets, with the stamp moved."""
        # Not exclusive: the stamp row's lock orders rule changes, and a scheduler's claim
        # inside the queue's (non-exclusive) transaction must not take the database's lock.
        with self._db.transaction(exclusive=False) as connection:
            count = connection.execute(sql, params).rowcount
            connection.execute(_BUMP)
            return count

    def _change_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._db.transaction(exclusive=False) as connection:
            if rows:
                with connection.cursor() as cursor:
                    cursor.executemany(sql, rows)
            connection.execute(_BUMP)

    def change_stamp(self) -> int:
        # A read of the row (one round trip), not the database's notified stamps: a change on
        # one node must show on every other at once, and the readers (PutEvents, the
        # scheduler) make round trips of their own anyway.
        return int(self._db.query_one("SELECT stamp FROM event_bus_stamp WHERE id = 1") or 0)

    # ------------------------------------------------------------------ buses

    def get_bus(self, name: str) -> EventBus | None:
        raw = self._db.query_one("SELECT doc FROM event_buses WHERE name = %s", name)
        return EventBus.from_doc(name, loads(raw)) if raw else None

    def put_bus(self, bus: EventBus) -> None:
        self._change(
            "INSERT INTO event_buses (name, doc) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET doc = excluded.doc",
            bus.name,
            dumps(bus.to_doc()),
        )

    def delete_bus(self, name: str) -> None:
        self._change("DELETE FROM event_buses WHERE name = %s", name)

    def buses(self, prefix: str | None, after: str | None, limit: int) -> list[EventBus]:
        # Prefixes are compared with left(), not LIKE, whose `_` would match any character.
        prefix = prefix or ""
        rows = self._db.query(
            "SELECT name, doc FROM event_buses "
            "WHERE left(name, %s) = %s AND name > %s ORDER BY name LIMIT %s",
            len(prefix),
            prefix,
            after or "",
            limit,
        )
        return [EventBus.from_doc(row[0], loads(row[1])) for row in rows]

    def has_rules(self, bus: str) -> bool:
        row = self._db.query_one("SELECT 1 FROM event_bus_rules WHERE bus = %s LIMIT 1", bus)
        return row is not None

    # ------------------------------------------------------------------ rules

    def get(self, name: str, bus: str = DEFAULT_BUS) -> Rule | None:
        rows = self._db.query(
            f"SELECT {_RULE_COLUMNS} FROM event_bus_rules WHERE bus = %s AND name = %s",
            bus,
            name,
        )
        return _rule(rows[0]) if rows else None

    def put(self, rule: Rule) -> None:
        self._change(
            "INSERT INTO event_bus_rules (bus, name, doc, has_pattern, next_fire_at) "
            "VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (bus, name) DO UPDATE SET doc = excluded.doc, "
            "has_pattern = excluded.has_pattern, next_fire_at = excluded.next_fire_at",
            rule.bus,
            rule.name,
            dumps(rule.to_doc()),
            rule.event_pattern is not None,
            rule.next_fire_at,
        )

    def delete(self, name: str, bus: str = DEFAULT_BUS) -> None:
        with self._db.transaction(exclusive=False) as connection:
            connection.execute(
                "DELETE FROM event_bus_targets WHERE bus = %s AND rule = %s", (bus, name)
            )
            connection.execute(
                "DELETE FROM event_bus_rules WHERE bus = %s AND name = %s", (bus, name)
            )
            connection.execute(_BUMP)

    def page(
        self, prefix: str | None, after: str | None, limit: int, bus: str = DEFAULT_BUS
    ) -> list[Rule]:
        prefix = prefix or ""
        rows = self._db.query(
            f"SELECT {_RULE_COLUMNS} FROM event_bus_rules "
            "WHERE bus = %s AND left(name, %s) = %s AND name > %s ORDER BY name LIMIT %s",
            bus,
            len(prefix),
            prefix,
            after or "",
            limit,
        )
        return [_rule(row) for row in rows]

    def targets(self, rule: str, bus: str = DEFAULT_BUS) -> list[Target]:
        rows = self._db.query(
            "SELECT id, arn, doc FROM event_bus_targets WHERE bus = %s AND rule = %s ORDER BY id",
            bus,
            rule,
        )
        return [Target(row[0], row[1], loads(row[2])) for row in rows]

    def put_targets(self, rule: str, targets: Sequence[Target], bus: str = DEFAULT_BUS) -> None:
        self._change_many(
            "INSERT INTO event_bus_targets (bus, rule, id, arn, doc) "
            "VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (bus, rule, id) DO UPDATE SET arn = excluded.arn, doc = excluded.doc",
            [(bus, rule, target.id, target.arn, dumps(target.doc)) for target in targets],
        )

    def remove_targets(self, rule: str, ids: Sequence[str], bus: str = DEFAULT_BUS) -> None:
        self._change(
            "DELETE FROM event_bus_targets WHERE bus = %s AND rule = %s AND id = ANY(%s)",
            bus,
            rule,
            list(ids),
        )

    def rules_with_target(
        self, arn: str, after: str | None, limit: int, bus: str = DEFAULT_BUS
    ) -> list[str]:
        rows = self._db.query(
            "SELECT DISTINCT rule FROM event_bus_targets "
            "WHERE bus = %s AND arn = %s AND rule > %s ORDER BY rule LIMIT %s",
            bus,
            arn,
            after or "",
            limit,
        )
        return [row[0] for row in rows]

    def pattern_rules(self) -> list[tuple[Rule, list[Target]]]:
        # One statement, hence one snapshot (a transaction at READ COMMITTED would give each
        # statement its own): a rule is never paired with targets of another moment.
        rows = self._db.query(
            "SELECT r.name, r.doc, r.next_fire_at, r.last_fired, r.bus, t.id, t.arn, t.doc "
            "FROM event_bus_rules r LEFT JOIN event_bus_targets t "
            "ON t.bus = r.bus AND t.rule = r.name "
            "WHERE r.has_pattern ORDER BY r.bus, r.name, t.id"
        )
        result: list[tuple[Rule, list[Target]]] = []
        for row in rows:
            if not result or (result[-1][0].bus, result[-1][0].name) != (row[4], row[0]):
                result.append((_rule(row), []))
            if row[5] is not None:
                result[-1][1].append(Target(row[5], row[6], loads(row[7])))
        return result

    # ------------------------------------------------------------------ schedules

    def due(self, now: int, limit: int) -> list[Rule]:
        rows = self._db.query(
            f"SELECT {_RULE_COLUMNS} FROM event_bus_rules "
            "WHERE next_fire_at IS NOT NULL AND next_fire_at <= %s "
            "ORDER BY next_fire_at LIMIT %s",
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
        # A compare-and-set on the next tick. Of two schedulers (on any nodes) the second
        # waits for the first's row lock, then finds the tick moved and updates nothing.
        # It leaves the change stamp alone.
        claimed = self._db.execute(
            "UPDATE event_bus_rules SET next_fire_at = %s, last_fired = %s "
            "WHERE bus = %s AND name = %s AND next_fire_at = %s",
            next_fire_at,
            tick,
            bus,
            name,
            expected,
            stamp=None,
        )
        return claimed == 1
