"""`lamina events redrive FUNCTION --id ID | --all`: failed asynchronous events back to the queue.

Like `lamina events`, it works on the store itself (the data directory's SQLite, or a
cluster's PostgreSQL with --store), so it needs no running server; a running one picks the
events up at its next poll of the queue. What a redrive does: `lamina.invoke.asynchronous.
redrive`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from lamina.settings import Settings
from lamina.store.protocols import AsyncQueue

VERB = "redrive"


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds to `lamina events`: a second positional (the function, after `redrive`)."""
    parser.add_argument(
        "redrive_function",
        nargs="?",
        metavar="FUNCTION",
        help="with `redrive`: the function whose failed events go back to the queue",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--id", metavar="REQUEST_ID", help="with `redrive`: one event")
    which.add_argument("--all", action="store_true", help="with `redrive`: every failed event")


def wanted(args: argparse.Namespace) -> bool:
    """Whether `lamina events` was asked to redrive (`lamina events redrive FUNCTION ...`)."""
    return args.function == VERB and (
        args.redrive_function is not None or args.id is not None or args.all
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.redrive_function is None:
        print("lamina: events redrive needs a FUNCTION", file=sys.stderr)
        return 2
    if args.id is None and not args.all:
        print("lamina: events redrive needs --id REQUEST_ID or --all", file=sys.stderr)
        return 2
    queue = _open_queue(args, settings)
    if queue is None:
        return 1
    # Accept an ARN too; events are kept per function name.
    function = args.redrive_function.split(":function:")[-1].split(":")[0]
    moved = queue.redrive(function, args.id, time.time())
    if args.json:
        print(json.dumps({"FunctionName": function, "Redriven": moved}, indent=2))
    if args.id is not None and not moved:
        print(f"lamina: {function} has no failed asynchronous event {args.id}", file=sys.stderr)
        return 1
    if not args.json:
        for event_id in moved:
            print(f"redriven {event_id}")
        print(f"{len(moved)} failed event(s) of {function} back in the queue.")
    return 0


def _open_queue(args: argparse.Namespace, settings: Settings) -> AsyncQueue | None:
    store_url = args.store or (None if args.data_dir else settings.store_url)
    if store_url:
        from lamina.store.postgres.database import PgDatabase
        from lamina.store.postgres.queue import PgAsyncQueue

        try:
            return PgAsyncQueue(PgDatabase(store_url, max_connections=2))
        except Exception as error:  # psycopg's, which nothing outside store/ may name
            print(f"lamina: cannot open the store: {error}", file=sys.stderr)
            return None
    from lamina.store.sqlite import open_stores

    data_dir = Path(args.data_dir) if args.data_dir else settings.data_dir
    if not (data_dir / "lamina.db").exists():
        print(f"lamina: no Lamina data in {data_dir} (see --data-dir)", file=sys.stderr)
        return None
    return open_stores(data_dir).queue
