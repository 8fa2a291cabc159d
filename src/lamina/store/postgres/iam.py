"""IAM's roles, users, access keys, policies and attachments, and STS's sessions, in
PostgreSQL.

As in SQLite (`lamina.store.sqlite.iam`): one orjson document per entity beside the columns
it is found and ordered by, names found through a lower-cased key column, text compared
bytewise (`COLLATE "C"`) so that both backends order alike. An identity column keeps the
order of writing (access keys, policy versions, attachments); an upsert keeps the row's.

IAM changes move the database's "iam" change stamp (`PgDatabase.change_stamp`): a
dictionary lookup per read, which compiled-policy caches can afford on every request. Another
node's change is seen within about a second (its NOTIFY, or the poll), no slower than IAM's
own propagation. Sessions leave it alone, for the reasons given in the SQLite store.
"""

from __future__ import annotations

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
from lamina.store.postgres.database import PgDatabase
from lamina.store.sealing import MasterKey

IAM = "iam"
"""The change stamp of everything here but sessions."""

MIGRATIONS = {
    1: """
CREATE TABLE IF NOT EXISTS iam_roles (
    name_key text COLLATE "C" PRIMARY KEY,
    name text COLLATE "C" NOT NULL,
    doc bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS iam_users (
    name_key text COLLATE "C" PRIMARY KEY,
    name text COLLATE "C" NOT NULL,
    doc bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS iam_access_keys (
    access_key_id text COLLATE "C" PRIMARY KEY,
    user_key text COLLATE "C" NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    doc bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS iam_access_keys_user ON iam_access_keys (user_key, seq);
CREATE TABLE IF NOT EXISTS iam_inline_policies (
    owner_kind text COLLATE "C" NOT NULL,
    owner_key text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    doc bytea NOT NULL,
    PRIMARY KEY (owner_kind, owner_key, name)
);
CREATE TABLE IF NOT EXISTS iam_policies (
    arn_key text COLLATE "C" PRIMARY KEY,
    name text COLLATE "C" NOT NULL,
    arn text COLLATE "C" NOT NULL,
    doc bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS iam_policy_versions (
    arn_key text COLLATE "C" NOT NULL,
    version_id text COLLATE "C" NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    doc bytea NOT NULL,
    PRIMARY KEY (arn_key, version_id)
);
CREATE TABLE IF NOT EXISTS iam_attachments (
    owner_kind text COLLATE "C" NOT NULL,
    owner_key text COLLATE "C" NOT NULL,
    policy_key text COLLATE "C" NOT NULL,
    policy_arn text COLLATE "C" NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (owner_kind, owner_key, policy_key)
);
CREATE INDEX IF NOT EXISTS iam_attachments_policy ON iam_attachments (policy_key);
CREATE TABLE IF NOT EXISTS iam_sessions (
    access_key_id text COLLATE "C" PRIMARY KEY,
    expires double precision NOT NULL,
    doc bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS iam_sessions_expiry ON iam_sessions (expires);
""",
}


class PgIamStore:
    def __init__(self, database: PgDatabase, master: MasterKey | None = None) -> None:
        """`master` seals access keys' secrets and sessions' credentials."""
        self._db = database
        self._master = master
        database.migrate("iam", MIGRATIONS)

    def transaction(self) -> AbstractContextManager[Any]:
        # Exclusive: the control plane's read-modify-writes (limits, conflicts) are
        # serialised across nodes.
        return self._db.transaction()

    def change_stamp(self) -> int:
        return self._db.change_stamp(IAM)

    def _change(self, *statements: tuple[str, Sequence[Any]]) -> int:
        """Statements that change IAM in one transaction, with the stamp moved; the first
        one's row count."""
        with self._db.transaction() as connection:
            self._db.touch(IAM)
            counts = [connection.execute(sql, params).rowcount for sql, params in statements]
        return counts[0]

    def _docs(self, sql: str, *params: Any) -> list[bytes]:
        return [row[0] for row in self._db.query(sql, *params)]

    # ------------------------------------------------------------------ roles

    def put_role(self, role: Role) -> None:
        self._change(
            (
                "INSERT INTO iam_roles (name_key, name, doc) VALUES (%s, %s, %s) "
                "ON CONFLICT (name_key) DO UPDATE SET name = excluded.name, doc = excluded.doc",
                (name_key(role.name), role.name, encode(role)),
            )
        )

    def get_role(self, name: str) -> Role | None:
        raw = self._db.query_one("SELECT doc FROM iam_roles WHERE name_key = %s", name_key(name))
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
                "INSERT INTO iam_users (name_key, name, doc) VALUES (%s, %s, %s) "
                "ON CONFLICT (name_key) DO UPDATE SET name = excluded.name, doc = excluded.doc",
                (name_key(user.name), user.name, encode(user)),
            )
        )

    def get_user(self, name: str) -> User | None:
        raw = self._db.query_one("SELECT doc FROM iam_users WHERE name_key = %s", name_key(name))
        return decode(User, raw) if raw else None

    def users(self) -> list[User]:
        return [decode(User, raw) for raw in self._docs("SELECT doc FROM iam_users ORDER BY name")]

    def delete_user(self, name: str) -> bool:
        return self._delete_owner("iam_users", "user", name)

    def _delete_owner(self, table: str, kind: str, name: str) -> bool:
        key = name_key(name)
        statements: list[tuple[str, Sequence[Any]]] = [
            (f"DELETE FROM {table} WHERE name_key = %s", (key,)),
            (
                "DELETE FROM iam_inline_policies WHERE owner_kind = %s AND owner_key = %s",
                (kind, key),
            ),
            ("DELETE FROM iam_attachments WHERE owner_kind = %s AND owner_key = %s", (kind, key)),
        ]
        if table == "iam_users":
            statements.append(("DELETE FROM iam_access_keys WHERE user_key = %s", (key,)))
        return self._change(*statements) > 0

    # ------------------------------------------------------------------ access keys

    def put_access_key(self, key: AccessKey) -> None:
        self._change(
            (
                "INSERT INTO iam_access_keys (access_key_id, user_key, doc) VALUES (%s, %s, %s) "
                "ON CONFLICT (access_key_id) DO UPDATE SET "
                "user_key = excluded.user_key, doc = excluded.doc",
                (key.access_key_id, name_key(key.user_name), seal_credentials(key, self._master)),
            )
        )

    def get_access_key(self, access_key_id: str) -> AccessKey | None:
        raw = self._db.query_one(
            "SELECT doc FROM iam_access_keys WHERE access_key_id = %s", access_key_id
        )
        return open_credentials(AccessKey, raw, self._master) if raw else None

    def access_keys(self, user_name: str) -> list[AccessKey]:
        docs = self._docs(
            "SELECT doc FROM iam_access_keys WHERE user_key = %s ORDER BY seq",
            name_key(user_name),
        )
        return [open_credentials(AccessKey, raw, self._master) for raw in docs]

    def delete_access_key(self, access_key_id: str) -> bool:
        sql = "DELETE FROM iam_access_keys WHERE access_key_id = %s"
        return self._change((sql, (access_key_id,))) > 0

    # ------------------------------------------------------------------ inline policies

    def put_inline_policy(self, policy: InlinePolicy) -> None:
        self._change(
            (
                "INSERT INTO iam_inline_policies (owner_kind, owner_key, name, doc) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (owner_kind, owner_key, name) "
                "DO UPDATE SET doc = excluded.doc",
                (policy.owner_kind, name_key(policy.owner), policy.name, encode(policy)),
            )
        )

    def get_inline_policy(self, owner_kind: str, owner: str, name: str) -> InlinePolicy | None:
        raw = self._db.query_one(
            "SELECT doc FROM iam_inline_policies "
            "WHERE owner_kind = %s AND owner_key = %s AND name = %s",
            owner_kind,
            name_key(owner),
            name,
        )
        return decode(InlinePolicy, raw) if raw else None

    def inline_policies(self, owner_kind: str, owner: str) -> list[InlinePolicy]:
        docs = self._docs(
            "SELECT doc FROM iam_inline_policies WHERE owner_kind = %s AND owner_key = %s "
            "ORDER BY name",
            owner_kind,
            name_key(owner),
        )
        return [decode(InlinePolicy, raw) for raw in docs]

    def delete_inline_policy(self, owner_kind: str, owner: str, name: str) -> bool:
        sql = (
            "DELETE FROM iam_inline_policies WHERE owner_kind = %s AND owner_key = %s AND name = %s"
        )
        return self._change((sql, (owner_kind, name_key(owner), name))) > 0

    # ------------------------------------------------------------------ managed policies

    def put_policy(self, policy: ManagedPolicy) -> None:
        self._change(
            (
                "INSERT INTO iam_policies (arn_key, name, arn, doc) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (arn_key) DO UPDATE SET "
                "name = excluded.name, arn = excluded.arn, doc = excluded.doc",
                (name_key(policy.arn), policy.name, policy.arn, encode(policy)),
            )
        )

    def get_policy(self, arn: str) -> ManagedPolicy | None:
        raw = self._db.query_one("SELECT doc FROM iam_policies WHERE arn_key = %s", name_key(arn))
        return decode(ManagedPolicy, raw) if raw else None

    def policies(self) -> list[ManagedPolicy]:
        docs = self._docs("SELECT doc FROM iam_policies ORDER BY name, arn")
        return [decode(ManagedPolicy, raw) for raw in docs]

    def delete_policy(self, arn: str) -> bool:
        # Its attachments go too (IAM's DeletePolicy refuses while any is left anyway).
        key = name_key(arn)
        return (
            self._change(
                ("DELETE FROM iam_policies WHERE arn_key = %s", (key,)),
                ("DELETE FROM iam_policy_versions WHERE arn_key = %s", (key,)),
                ("DELETE FROM iam_attachments WHERE policy_key = %s", (key,)),
            )
            > 0
        )

    def put_policy_version(self, version: PolicyVersion) -> None:
        self._change(
            (
                "INSERT INTO iam_policy_versions (arn_key, version_id, doc) VALUES (%s, %s, %s) "
                "ON CONFLICT (arn_key, version_id) DO UPDATE SET doc = excluded.doc",
                (name_key(version.policy_arn), version.version_id, encode(version)),
            )
        )

    def get_policy_version(self, arn: str, version_id: str) -> PolicyVersion | None:
        raw = self._db.query_one(
            "SELECT doc FROM iam_policy_versions WHERE arn_key = %s AND version_id = %s",
            name_key(arn),
            version_id,
        )
        return decode(PolicyVersion, raw) if raw else None

    def policy_versions(self, arn: str) -> list[PolicyVersion]:
        docs = self._docs(
            "SELECT doc FROM iam_policy_versions WHERE arn_key = %s ORDER BY seq", name_key(arn)
        )
        return [decode(PolicyVersion, raw) for raw in docs]

    def delete_policy_version(self, arn: str, version_id: str) -> bool:
        sql = "DELETE FROM iam_policy_versions WHERE arn_key = %s AND version_id = %s"
        return self._change((sql, (name_key(arn), version_id))) > 0

    # ------------------------------------------------------------------ attachments

    def attach(self, owner_kind: str, owner: str, policy_arn: str) -> None:
        # DO NOTHING: attaching again keeps the first attachment's place in the order.
        self._change(
            (
                "INSERT INTO iam_attachments (owner_kind, owner_key, policy_key, policy_arn) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (owner_kind, name_key(owner), name_key(policy_arn), policy_arn),
            )
        )

    def detach(self, owner_kind: str, owner: str, policy_arn: str) -> bool:
        sql = (
            "DELETE FROM iam_attachments "
            "WHERE owner_kind = %s AND owner_key = %s AND policy_key = %s"
        )
        return self._change((sql, (owner_kind, name_key(owner), name_key(policy_arn)))) > 0

    def attached(self, owner_kind: str, owner: str) -> list[str]:
        rows = self._db.query(
            "SELECT policy_arn FROM iam_attachments WHERE owner_kind = %s AND owner_key = %s "
            "ORDER BY seq",
            owner_kind,
            name_key(owner),
        )
        return [row[0] for row in rows]

    def attachment_count(self, policy_arn: str) -> int:
        return int(
            self._db.query_one(
                "SELECT count(*) FROM iam_attachments WHERE policy_key = %s",
                name_key(policy_arn),
            )
        )

    # ------------------------------------------------------------------ sessions

    def put_session(self, session: Session) -> None:
        self._db.execute(
            "INSERT INTO iam_sessions (access_key_id, expires, doc) VALUES (%s, %s, %s) "
            "ON CONFLICT (access_key_id) DO UPDATE SET "
            "expires = excluded.expires, doc = excluded.doc",
            session.access_key_id,
            session.expires,
            seal_credentials(session, self._master),
            stamp=None,
        )

    def get_session(self, access_key_id: str) -> Session | None:
        raw = self._db.query_one(
            "SELECT doc FROM iam_sessions WHERE access_key_id = %s", access_key_id
        )
        return open_credentials(Session, raw, self._master) if raw else None

    def delete_expired_sessions(self, now: float) -> int:
        return self._db.execute("DELETE FROM iam_sessions WHERE expires <= %s", now, stamp=None)
