"""`lamina mappings [FUNCTION]`: event source mappings with their state, last result, lag
and errors.

Reads the server's `/_lamina/mappings` (signed like the Lambda API). Lag is what the running
poller last saw: messages visible in the queue (SQS, MQ) or the iterator age (streams); `-`
while no poller runs (a Disabled mapping, a kind Lamina does not poll) or none was read yet.
ERRORS counts failed invocations since the poller started; the last problem met reading the
source or invoking is listed under the table. `--json` prints the server's document.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lamina.commands.remote import Remote, RemoteError
from lamina.settings import Settings

PATH = "/_lamina/mappings"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "function", nargs="?", help="only this function's mappings (a name or an ARN)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--endpoint", help="Lamina's address (default: from LAMINA_* settings)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    remote = Remote(args.endpoint or settings.endpoint, settings)
    params = {"function": args.function} if args.function else None
    try:
        document = remote.get_json(PATH, params)
    except RemoteError as error:
        print(f"lamina mappings: {error}", file=sys.stderr)
        return 1
    print(json.dumps(document, indent=2) if args.json else render(document, args.function))
    return 0


def render(document: dict[str, Any], function: str | None = None) -> str:
    mappings = document["Mappings"]
    if not mappings:
        return (
            f"No event source mappings for {function}." if function else "No event source mappings."
        )
    lines = [
        f"{'UUID':<36}  {'FUNCTION':<32} {'KIND':<8} {'STATE':<9} {'LAG':>10} {'ERRORS':>6}  "
        f"{'LAST RESULT':<24} SOURCE"
    ]
    problems = []
    for mapping in mappings:
        poller = mapping["Poller"] or {}
        source = mapping["EventSourceArn"] or ",".join(mapping.get("BootstrapServers", []))
        lines.append(
            f"{mapping['UUID']:<36}  {_function(mapping):<32} {mapping['Kind']:<8} "
            f"{mapping['State']:<9} {lag(poller):>10} {_errors(poller):>6}  "
            f"{mapping['LastProcessingResult'] or '-':<24} {source}"
        )
        if poller.get("LastError"):
            problems.append(f"  {mapping['UUID']}: {poller['LastError']}")
    if problems:
        lines += ["", "Last errors:", *problems]
    return "\n".join(lines)


def lag(poller: dict[str, Any]) -> str:
    """`12 msgs`, `850 ms`, `3.2 s`, `4.0 min`; `-` when unknown."""
    value = poller.get("Lag")
    if value is None:
        return "-"
    if poller.get("LagUnit") == "milliseconds":
        if value < 1000:
            return f"{value:.0f} ms"
        if value < 60_000:
            return f"{value / 1000:.1f} s"
        if value < 3_600_000:
            return f"{value / 60_000:.1f} min"
        return f"{value / 3_600_000:.1f} h"
    count = int(value)
    return f"{count} msg" if count == 1 else f"{count} msgs"


def _errors(poller: dict[str, Any]) -> str:
    return str(poller["Errors"]) if poller else "-"


def _function(mapping: dict[str, Any]) -> str:
    """The function as the mapping addresses it: `name` or `name:qualifier`."""
    arn: str = mapping["FunctionArn"]
    return arn.split(":function:", 1)[-1]
