"""Shared secrets in PostgreSQL: one row per name, inserted by the first node to need it.

A missing secret is offered with `INSERT ... ON CONFLICT DO NOTHING` and then read back with
a statement of its own: when two nodes race, the loser's insert waits for the winner's to
commit and does nothing, and the read that follows (a new snapshot) sees the winner's row.
(One statement could not do both: its snapshot predates the winner's commit.)
"""

from __future__ import annotations

import secrets
import threading

import psycopg

from lamina.store.errors import StorageError
from lamina.store.postgres.database import PgDatabase
from lamina.store.protocols.secrets import SECRET_BYTES, check_name

MIGRATIONS = {
    1: """
CREATE TABLE IF NOT EXISTS lamina_secrets (
    name text COLLATE "C" PRIMARY KEY,
    secret bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
""",
}

_READ = "SELECT secret FROM lamina_secrets WHERE name = %s"
_OFFER = "INSERT INTO lamina_secrets (name, secret) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING"


class PgSharedSecrets:
    """Implements `SharedSecrets` for every node of one PostgreSQL store."""

    def __init__(self, database: PgDatabase) -> None:
        self._db = database
        self._known: dict[str, bytes] = {}
        self._lock = threading.Lock()
        database.migrate("secrets", MIGRATIONS)

    def secret(self, name: str) -> bytes:
        check_name(name)
        with self._lock:
            known = self._known.get(name)
            if known is None:
                known = self._known[name] = self._read_or_create(name)
            return known

    def _read_or_create(self, name: str) -> bytes:
        try:
            found = self._db.query_one(_READ, name)
            if found is None:
                self._db.execute(_OFFER, name, secrets.token_bytes(SECRET_BYTES), stamp=None)
                found = self._db.query_one(_READ, name)
        except psycopg.Error as error:
            raise StorageError(f"could not read the shared secret {name!r}: {error}") from error
        if found is None:  # only if someone deleted the row in between
            raise StorageError(f"the shared secret {name!r} vanished as it was made")
        return bytes(found)
