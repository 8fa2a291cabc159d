"""Ownership leases (`store.protocols.ownership`) in PostgreSQL: one row per name, with its
`owner` and `expires_at` on the database's clock.

A claim is one statement: it inserts the rows nobody has, takes over the expired ones and
renews this owner's own once a third of their time has passed (so a steady owner writes a
row about three times per lease, not once per claim), and returns what this owner holds.
Expiry is judged by the server's `clock_timestamp()`, so nodes' clocks need not agree. A node
killed with -9 renews nothing: its rows expire and the next claim by any node takes them.
"""

from __future__ import annotations

from collections.abc import Collection

from lamina.store.postgres.database import PgDatabase

MIGRATIONS = {
    1: """
CREATE TABLE IF NOT EXISTS lamina_ownership (
    name text COLLATE "C" PRIMARY KEY,
    owner text NOT NULL,
    expires_at timestamptz NOT NULL
);
""",
}

# The upsert's rows are those inserted, taken over or renewed; the second SELECT adds this
# owner's leases that were not due for renewal (it sees the table as the statement began,
# when they were already held and unexpired).
_CLAIM = """
WITH claimed AS (
    INSERT INTO lamina_ownership AS l (name, owner, expires_at)
    SELECT unnest(%s::text[]), %s, clock_timestamp() + make_interval(secs => %s)
    ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
    WHERE l.expires_at < clock_timestamp()
       OR (l.owner = excluded.owner
           AND l.expires_at < clock_timestamp() + make_interval(secs => %s))
    RETURNING l.name
)
SELECT name FROM claimed
UNION
SELECT name FROM lamina_ownership
WHERE owner = %s AND name = ANY(%s::text[]) AND expires_at > clock_timestamp()
"""


class PgOwnershipLeases:
    """The leases of one owner (a node) on a shared database."""

    def __init__(self, database: PgDatabase, owner: str, ttl_s: float, *, owned: bool = False):
        if ttl_s <= 0:
            raise ValueError(f"a lease's time must be positive, got {ttl_s}")
        self._db = database
        self._owner = owner
        self._ttl = ttl_s
        self._owned = owned
        database.migrate("ownership", MIGRATIONS)

    @property
    def hold_s(self) -> float:
        # A lease not due for renewal still has more than two thirds of its time left.
        return self._ttl * 2 / 3

    def holders(self, names: Collection[str]) -> dict[str, str]:
        """Who holds each of `names` now (unexpired leases only): for operators and tests."""
        rows = self._db.query(
            "SELECT name, owner FROM lamina_ownership "
            "WHERE name = ANY(%s::text[]) AND expires_at > clock_timestamp()",
            sorted(names),
        )
        return dict(rows)

    def claim(self, names: Collection[str]) -> set[str]:
        if not names:
            return set()
        ordered = sorted(names)
        owner, ttl = self._owner, self._ttl
        rows = self._db.query(_CLAIM, ordered, owner, ttl, ttl * 2 / 3, owner, ordered)
        return {row[0] for row in rows}

    def release(self, names: Collection[str]) -> None:
        if names:
            self._db.execute(
                "DELETE FROM lamina_ownership WHERE owner = %s AND name = ANY(%s::text[])",
                self._owner,
                sorted(names),
                stamp=None,
            )

    def close(self) -> None:
        if self._owned:
            self._db.close()
