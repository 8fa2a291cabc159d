"""`lamina audit`: who called what, when, and with what result.

It asks a running server (`GET /_lamina/audit`, signed like any API call), which also works
for remote servers, or reads a data directory directly with `--data-dir`, which also works
while the server is stopped.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina.audit.record import ENDPOINT_PATH
from lamina.settings import Settings
from lamina.store.files import open_audit
from lamina.store.files.audit import audit_directory
from lamina.store.protocols.audit import AuditQuery, timestamp

if TYPE_CHECKING:
    pass

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", help="only calls since then: 30s, 15m, 1h, 2d or a UTC ISO time")
    parser.add_argument("--function", help="only calls on this function (a name or an ARN)")
    parser.add_argument("--operation", help="only this operation, e.g. UpdateFunctionCode")
    parser.add_argument("--failed", action="store_true", help="only calls that failed")
    parser.add_argument(
        "--limit", type=int, default=100, help="show the newest N matching calls (default 100)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--endpoint", help="the server to ask (default http://127.0.0.1:9000)")
    source.add_argument(
        "--data-dir", help="read the log in this data directory instead of asking a server"
    )
    source.add_argument(
        "--store",
        metavar="URL",
        help="read a cluster's log from its PostgreSQL store instead of asking a server",
    )


def parse_since(value: str, now: float) -> str:
    """A duration back from now, or an absolute time (UTC unless it says otherwise)."""
    match = _DURATION.match(value.strip())
    if match:
        return timestamp(now - float(match[1]) * _UNITS[match[2]])
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"--since takes a duration such as 30s, 15m, 1h or 2d, or an ISO time; got {value!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return timestamp(moment.timestamp())


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.limit < 1:
        print("lamina: --limit must be at least 1", file=sys.stderr)
        return 2
    try:
        since = parse_since(args.since, time.time()) if args.since else None
    except ValueError as error:
        print(f"lamina: {error}", file=sys.stderr)
        return 2
    query = AuditQuery(since, args.function, args.operation, args.failed, args.limit)
    if args.store:
        from lamina.store.postgres import open_pg_audit

        try:
            records = open_pg_audit(args.store, settings.audit_max_mb << 20)
        except Exception as error:  # psycopg's, which nothing outside store/ may name
            print(f"lamina: cannot read the store: {error}", file=sys.stderr)
            return 1
        try:
            entries = records.query(query)
        finally:
            records.close()
    elif args.data_dir and settings.store_url:
        print(
            "lamina: LAMINA_STORE is set, so the audit log is in PostgreSQL, not in "
            f"{args.data_dir}: pass --store, or leave out --data-dir to ask a server",
            file=sys.stderr,
        )
        return 1
    elif args.data_dir:
        data_dir = Path(args.data_dir)
        if not audit_directory(data_dir).is_dir():
            print(f"lamina: no audit log in {args.data_dir}", file=sys.stderr)
            return 1
        # Read only: a store that is not the writer never writes, so a running server's
        # segment is left alone.
        entries = open_audit(data_dir, settings.audit_max_mb << 20).query(query)
    else:
        try:
            entries = fetch((args.endpoint or settings.endpoint).rstrip("/"), query, settings)
        except RuntimeError as error:
            print(f"lamina: {error}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps({"Events": entries}, indent=2))
    else:
        print_table(entries)
    return 0


def fetch(endpoint: str, query: AuditQuery, settings: Settings) -> list[dict[str, Any]]:
    from lamina.commands.remote import Remote

    document = Remote(endpoint, settings).get_json(ENDPOINT_PATH, query.to_params())
    entries: list[dict[str, Any]] = document["Events"]
    return entries


def print_table(entries: list[dict[str, Any]]) -> None:
    if not entries:
        print("No audited calls match.")
        return
    print(f"{'TIME':<24}  {'CALLER':<20}  {'SOURCE':<15}  {'OPERATION':<32}  STATUS  RESOURCE")
    for entry in entries:
        print(
            f"{entry.get('Time', ''):<24}  {entry.get('Caller') or '-':<20}  "
            f"{entry.get('SourceIp') or '-':<15}  {entry.get('Operation') or '-':<32}  "
            f"{entry.get('Status')!s:<6}  {entry.get('Resource') or '-'}"
            + (f"  ({entry['ErrorCode']})" if entry.get("ErrorCode") else "")
        )
