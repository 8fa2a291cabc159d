"""`lamina cluster status`: the cluster's live nodes and the async queue's depth.

Reads the server's `/_lamina/cluster` (signed like the Lambda API): the nodes as the node
asked last read them from the registry, each with its role (worker or API-only frontend),
epoch, time since its last heartbeat, environments, invocations in flight and memory used
out of its capacity. Suspects (a connection to them failed) are listed under the table: they
get no calls until their next heartbeat. A single node shows itself with no epoch. `--json`
prints the server's document.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lamina.commands.remote import Remote, RemoteError
from lamina.settings import Settings

PATH = "/_lamina/cluster"


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="cluster_command", required=True)
    status = actions.add_parser("status", help="live nodes, their load, and the queue's depth")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--endpoint", help="Lamina's address (default: from LAMINA_* settings)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    remote = Remote(args.endpoint or settings.endpoint, settings)
    try:
        document = remote.get_json(PATH)
    except RemoteError as error:
        print(f"lamina cluster status: {error}", file=sys.stderr)
        return 1
    print(json.dumps(document, indent=2) if args.json else render(document))
    return 0


def render(document: dict[str, Any]) -> str:
    lines = [
        f"{'NODE':<40} {'ADDRESS':<28} {'ROLE':<8} {'EPOCH':>14} {'HEARTBEAT':>9} "
        f"{'ENVS':>5} {'IN FLIGHT':>9}  MEMORY"
    ]
    for node in document["nodes"]:
        name = node["node_id"] + (" (this)" if node["this"] else "")
        lines.append(
            f"{name:<40} {node['address']:<28} {_role(node):<8} {_epoch(node):>14} "
            f"{_age(node):>9} {node['environments']:>5} {node['in_flight']:>9}  {_memory(node)}"
        )
    suspects = [node["node_id"] for node in document["nodes"] if node["suspect"]]
    if suspects:
        lines += ["", "Suspect (a connection failed; no calls until it heartbeats again):"]
        lines += [f"  {node_id}" for node_id in suspects]
    queue = document["queue"]
    lines += [
        "",
        f"Async queue: {queue['queued']} queued, {queue['retrying']} retrying, "
        f"{queue['in_flight']} in flight, {queue['failed']} failed",
    ]
    return "\n".join(lines)


def _role(node: dict[str, Any]) -> str:
    return "worker" if node["worker"] else "frontend"


def _epoch(node: dict[str, Any]) -> str:
    return "-" if node["epoch"] is None else str(node["epoch"])


def _age(node: dict[str, Any]) -> str:
    """`0.4 s ago`-style, without the words: `0.4 s`, `12 s`, `3.0 min`."""
    age: float = node["heartbeat_age_s"]
    if age < 10:
        return f"{age:.1f} s"
    if age < 120:
        return f"{age:.0f} s"
    return f"{age / 60:.1f} min"


def _memory(node: dict[str, Any]) -> str:
    """`384 / 3072 MB`; a frontend holds none."""
    if not node["worker"] and not node["memory_used_mb"]:
        return "-"
    return f"{node['memory_used_mb']} / {node['capacity_mb']} MB"
