"""A PostgreSQL database of its own for a test module's cluster, dropped afterwards.

Server processes take a URL (`--store`), not a schema, so each module that starts nodes on
PostgreSQL gets a fresh database on the machine's server (LAMINA_TEST_POSTGRES names it).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from tests.support.backends import POSTGRES_URL


@contextmanager
def fresh_database(prefix: str = "lamina_it") -> Iterator[str]:
    """The URL of a new, empty database; it is dropped (connections and all) on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
