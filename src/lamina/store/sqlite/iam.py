"""IAM's roles, users, access keys, policies and attachments, and STS's sessions, in SQLite
(the main database).

Every entity is one orjson document (`lamina.store.iam_documents`) beside the columns it is
found and ordered by. Names are found case-insensitively through a lower-cased key column,
as IAM finds them; the document keeps the spelling given.

Writes go to the connection directly rather than through `Database.execute`, whose change
counter tells function caches to re-read: nothing here changes a function. IAM changes move
a stamp of their own instead, a row (so that another process sharing the file sees it move),
in the writing transaction. Sessions leave it alone: a session never changes once issued
(callers check its expiry themselves), and issuing one per AssumeRole or per environment
must not throw away every compiled policy.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from lamina.model.iam import (
    AccessKey,
    InlinePolicy,
    ManagedPolicy,
    PolicyVersion,
    Role,
    Session,
    User,
)
from lamina.store.iam_documents import (
    decode,
    encode,
    name_key,
    open_credentials,
    seal_credentials,
)
from lamina.store.sealing import MasterKey
from lamina.store.sqlite.database import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS iam_roles (
    name_key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    doc BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS iam_users (
    name_key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    doc BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS iam_access_keys (
    access_key_id TEXT PRIMARY KEY,
    user_key TEXT NOT NULL,
    doc BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS iam_access_keys_user ON iam_access_keys (user_key);
CREATE TABLE IF NOT EXISTS iam_inline_policies (
    owner_kind TEXT NOT NULL,
    owner_key TEXT NOT NULL,
    name TEXT NOT NULL,
    doc BLOB NOT NULL,
    PRIMARY KEY (owner_kind, owner_key, name)
);
CREATE TABLE IF NOT EXISTS iam_policies (
    arn_key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    arn TEXT NOT NULL,
    doc BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS iam_policy_versions (
    arn_key TEXT NOT NULL,
    version_id TEXT NOT NULL,
    doc BLOB NOT NULL,
    PRIMARY KEY (arn_key, version_id)
);
CREATE TABLE IF NOT EXISTS iam_attachments (
    owner_kind TEXT NOT NULL,
    owner_key TEXT NOT NULL,
    policy_key TEXT NOT NULL,
    policy_arn TEXT NOT NULL,
    PRIMARY KEY (owner_kind, owner_key, policy_key)
);
CREATE INDEX IF NOT EXISTS iam_attachments_policy ON iam_attachments (policy_key);
CREATE TABLE IF NOT EXISTS iam_sessions (
    access_key_id TEXT PRIMARY KEY,
    expires REAL NOT NULL,
    doc BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS iam_sessions_expiry ON iam_sessions (expires);
CREATE TABLE IF NOT EXISTS iam_stamp (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    stamp INTEGER NOT NULL
);
INSERT OR IGNORE INTO iam_stamp (id, stamp) VALUES (1, 0);
"""

_BUMP = "UPDATE iam_stamp SET stamp = stamp + 1 WHERE id = 1"

# Orders that "in the order written" relies on: rowid grows with each insert and an upsert
# keeps the row's, so a replaced key or re-put version keeps its place.
_IN_ORDER = "ORDER BY rowid"


class SqliteIamStore:
    def __init__(self, database: Database, master: MasterKey | None = None) -> None:
        """`master` seals access keys' secrets and sessions' credentials."""
        self._db = database
        self._master = master
        # The tables are this store's own; the statements are idempotent.
        database.connection().executescript(SCHEMA)

    def transaction(self) -> AbstractContextManager[Any]:
        return self._db.transaction()

    def change_stamp(self) -> int:
        return int(self._db.query_one("SELECT stamp FROM iam_stamp WHERE id = 1") or 0)

    def _change(self, *statements: tuple[str, Sequence[Any]]) -> int:
        """Statements that change IAM in one transaction, with the stamp moved; the first
        one's row count."""
        with self._db.transaction() as connection:
            counts = [connection.execute(sql, params).rowcount for sql, params in statements]
            connection.execute(_BUMP)
        return counts[0]

    def _docs(self, sql: str, *params: Any) -> list[bytes]:
        return [row[0] for row in self._db.query(sql, *params)]

    # ------------------------------------------------------------------ roles

    def put_role(self, role: Role) -> None:
        self._change(
            (
                "INSERT INTO iam_roles (name_key, name, doc) VALUES (?, ?, ?) "
                "ON CONFLICT (name_key) DO UPDATE SET name = excluded.name, doc = excluded.doc",
                (name_key(role.name), role.name, encode(role)),
            )
        )

    def get_role(self, name: str) -> Role | None:
        raw = self._db.query_one("SELECT doc FROM iam_roles WHERE name_key = ?", name_key(name))
        return decode(Role, raw) if raw else None

    def roles(self) -> list[Role]:
        return [decode(Role, raw) for raw in self._docs("SELECT doc FROM iam_roles ORDER BY name")]

    def delete_role(self, name: str) -> bool:
        # What hangs off the role goes with it, so a role created again under the name
        # starts bare, as on IAM (whose DeleteRole refuses while any is left anyway).
        return self._delete_owner("iam_roles", "role", name)

    # ------------------------------------------------------------------ users

    def put_user(self, user: User) -> None:
        self._change(
            (
                "INSERT INTO iam_users (name_key, name, doc) VALUES (?, ?, ?) "
                "ON CONFLICT (name_key) DO UPDATE SET name = excluded.name, doc = excluded.doc",
                (name_key(user.name), user.name, encode(user)),
            )
        )

    def get_user(self, name: str) -> User | None:
        raw = self._db.query_one("SELECT doc FROM iam_users WHERE name_key = ?", name_key(name))
        return decode(User, raw) if raw else None

    def users(self) -> list[User]:
        return [decode(User, raw) for raw in self._docs("SELECT doc FROM iam_users ORDER BY name")]

    def delete_user(self, name: str) -> bool:
        return self._delete_owner("iam_users", "user", name)

    def _delete_owner(self, table: str, kind: str, name: str) -> bool:
        key = name_key(name)
        statements: list[tuple[str, Sequence[Any]]] = [
            (f"DELETE FROM {table} WHERE name_key = ?", (key,)),
            ("DELETE FROM iam_inline_policies WHERE owner_kind = ? AND owner_key = ?", (kind, key)),
            ("DELETE FROM iam_attachments WHERE owner_kind = ? AND owner_key = ?", (kind, key)),
        ]
        if table == "iam_users":
            statements.append(("DELETE FROM iam_access_keys WHERE user_key = ?", (key,)))
        return self._change(*statements) > 0

    # ------------------------------------------------------------------ access keys

    def put_access_key(self, key: AccessKey) -> None:
        self._change(
            (
                "INSERT INTO iam_access_keys (access_key_id, user_key, doc) VALUES (?, ?, ?) "
                "ON CONFLICT (access_key_id) DO UPDATE SET "
                "user_key = excluded.user_key, doc = excluded.doc",
                (key.access_key_id, name_key(key.user_name), seal_credentials(key, self._master)),
            )
        )

    def get_access_key(self, access_key_id: str) -> AccessKey | None:
        raw = self._db.query_one(
            "SELECT doc FROM iam_access_keys WHERE access_key_id = ?", access_key_id
        )
        return open_credentials(AccessKey, raw, self._master) if raw else None

    def access_keys(self, user_name: str) -> list[AccessKey]:
        docs = self._docs(
            f"SELECT doc FROM iam_access_keys WHERE user_key = ? {_IN_ORDER}", name_key(user_name)
        )
        return [open_credentials(AccessKey, raw, self._master) for raw in docs]

    def delete_access_key(self, access_key_id: str) -> bool:
        sql = "DELETE FROM iam_access_keys WHERE access_key_id = ?"
        return self._change((sql, (access_key_id,))) > 0

    # ------------------------------------------------------------------ inline policies

    def put_inline_policy(self, policy: InlinePolicy) -> None:
        self._change(
            (
                "INSERT INTO iam_inline_policies (owner_kind, owner_key, name, doc) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (owner_kind, owner_key, name) "
                "DO UPDATE SET doc = excluded.doc",
                (policy.owner_kind, name_key(policy.owner), policy.name, encode(policy)),
            )
        )

    def get_inline_policy(self, owner_kind: str, owner: str, name: str) -> InlinePolicy | None:
        raw = self._db.query_one(
            "SELECT doc FROM iam_inline_policies "
            "WHERE owner_kind = ? AND owner_key = ? AND name = ?",
            owner_kind,
            name_key(owner),
            name,
        )
        return decode(InlinePolicy, raw) if raw else None

    def inline_policies(self, owner_kind: str, owner: str) -> list[InlinePolicy]:
        docs = self._docs(
            "SELECT doc FROM iam_inline_policies WHERE owner_kind = ? AND owner_key = ? "
            "ORDER BY name",
            owner_kind,
            name_key(owner),
        )
        return [decode(InlinePolicy, raw) for raw in docs]

    def delete_inline_policy(self, owner_kind: str, owner: str, name: str) -> bool:
        sql = "DELETE FROM iam_inline_policies WHERE owner_kind = ? AND owner_key = ? AND name = ?"
        return self._change((sql, (owner_kind, name_key(owner), name))) > 0

    # ------------------------------------------------------------------ managed policies

    def put_policy(self, policy: ManagedPolicy) -> None:
        self._change(
            (
                "INSERT INTO iam_policies (arn_key, name, arn, doc) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (arn_key) DO UPDATE SET "
                "name = excluded.name, arn = excluded.arn, doc = excluded.doc",
                (name_key(policy.arn), policy.name, policy.arn, encode(policy)),
            )
        )

    def get_policy(self, arn: str) -> ManagedPolicy | None:
        raw = self._db.query_one("SELECT doc FROM iam_policies WHERE arn_key = ?", name_key(arn))
        return decode(ManagedPolicy, raw) if raw else None

    def policies(self) -> list[ManagedPolicy]:
        docs = self._docs("SELECT doc FROM iam_policies ORDER BY name, arn")
        return [decode(ManagedPolicy, raw) for raw in docs]

    def delete_policy(self, arn: str) -> bool:
        # Its attachments go too (IAM's DeletePolicy refuses while any is left anyway).
        key = name_key(arn)
        return (
            self._change(
                ("DELETE FROM iam_policies WHERE arn_key = ?", (key,)),
                ("DELETE FROM iam_policy_versions WHERE arn_key = ?", (key,)),
                ("DELETE FROM iam_attachments WHERE policy_key = ?", (key,)),
            )
            > 0
        )

    def put_policy_version(self, version: PolicyVersion) -> None:
        self._change(
            (
                "INSERT INTO iam_policy_versions (arn_key, version_id, doc) VALUES (?, ?, ?) "
                "ON CONFLICT (arn_key, version_id) DO UPDATE SET doc = excluded.doc",
                (name_key(version.policy_arn), version.version_id, encode(version)),
            )
        )

    def get_policy_version(self, arn: str, version_id: str) -> PolicyVersion | None:
        raw = self._db.query_one(
            "SELECT doc FROM iam_policy_versions WHERE arn_key = ? AND version_id = ?",
            name_key(arn),
            version_id,
        )
        return decode(PolicyVersion, raw) if raw else None

    def policy_versions(self, arn: str) -> list[PolicyVersion]:
        docs = self._docs(
            f"SELECT doc FROM iam_policy_versions WHERE arn_key = ? {_IN_ORDER}", name_key(arn)
        )
        return [decode(PolicyVersion, raw) for raw in docs]

    def delete_policy_version(self, arn: str, version_id: str) -> bool:
        sql = "DELETE FROM iam_policy_versions WHERE arn_key = ? AND version_id = ?"
        return self._change((sql, (name_key(arn), version_id))) > 0

    # ------------------------------------------------------------------ attachments

    def attach(self, owner_kind: str, owner: str, policy_arn: str) -> None:
        # DO NOTHING: attaching again keeps the first attachment's place in the order.
        self._change(
            (
                "INSERT INTO iam_attachments (owner_kind, owner_key, policy_key, policy_arn) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (owner_kind, name_key(owner), name_key(policy_arn), policy_arn),
            )
        )

    def detach(self, owner_kind: str, owner: str, policy_arn: str) -> bool:
        sql = (
            "DELETE FROM iam_attachments WHERE owner_kind = ? AND owner_key = ? AND policy_key = ?"
        )
        return self._change((sql, (owner_kind, name_key(owner), name_key(policy_arn)))) > 0

    def attached(self, owner_kind: str, owner: str) -> list[str]:
        rows = self._db.query(
            f"SELECT policy_arn FROM iam_attachments WHERE owner_kind = ? AND owner_key = ? "
            f"{_IN_ORDER}",
            owner_kind,
            name_key(owner),
        )
        return [row[0] for row in rows]

    def attachment_count(self, policy_arn: str) -> int:
        return int(
            self._db.query_one(
                "SELECT count(*) FROM iam_attachments WHERE policy_key = ?", name_key(policy_arn)
            )
        )

    # ------------------------------------------------------------------ sessions

    def put_session(self, session: Session) -> None:
        with self._db.transaction() as connection:
            connection.execute(
                "INSERT INTO iam_sessions (access_key_id, expires, doc) VALUES (?, ?, ?) "
                "ON CONFLICT (access_key_id) DO UPDATE SET "
                "expires = excluded.expires, doc = excluded.doc",
                (session.access_key_id, session.expires, seal_credentials(session, self._master)),
            )

    def get_session(self, access_key_id: str) -> Session | None:
        raw = self._db.query_one(
            "SELECT doc FROM iam_sessions WHERE access_key_id = ?", access_key_id
        )
        return open_credentials(Session, raw, self._master) if raw else None

    def delete_expired_sessions(self, now: float) -> int:
        with self._db.transaction() as connection:
            cursor: sqlite3.Cursor = connection.execute(
                "DELETE FROM iam_sessions WHERE expires <= ?", (now,)
            )
            return int(cursor.rowcount)
