"""`lamina top`: a live table of functions, refreshed every few seconds.

Per function: invocations per second, p50/p99 duration and error rate over the last
`--window` seconds, plus invocations in flight and warm environments now. `--once` prints
the table once (for scripts and tests); `--json` prints the server's document.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from lamina.commands.remote import Remote, RemoteError
from lamina.settings import Settings

_CLEAR = "\x1b[H\x1b[2J"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true", help="print the table once and exit")
    parser.add_argument(
        "--interval", type=float, default=2.0, help="seconds between refreshes (default 2)"
    )
    parser.add_argument(
        "--window",
        type=int,
        default=10,
        help="seconds of history behind rates and percentiles (default 10, at most 300)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (implies --once)")
    parser.add_argument("--endpoint", help="Lamina's address (default: from LAMINA_* settings)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    remote = Remote(args.endpoint or settings.endpoint, settings)
    params = {"window": str(args.window)}
    try:
        if args.json or args.once:
            document = remote.get_json("/_lamina/top", params)
            print(
                json.dumps(document, indent=2) if args.json else render(document, remote.endpoint)
            )
            return 0
        while True:
            document = remote.get_json("/_lamina/top", params)
            sys.stdout.write(_CLEAR + render(document, remote.endpoint) + "\n")
            sys.stdout.flush()
            time.sleep(max(0.2, args.interval))
    except RemoteError as error:
        print(f"lamina top: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def render(document: dict[str, Any], endpoint: str) -> str:
    account = document["Account"]
    at = datetime.fromtimestamp(document["Time"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        f"Lamina at {endpoint}  {at}  last {document['Window']} s  "
        f"concurrency {account['ConcurrentExecutions']}/{account['ConcurrencyLimit']}",
        f"{'FUNCTION':<40} {'INV/S':>8} {'P50 MS':>9} {'P99 MS':>9} {'ERRORS':>7} "
        f"{'THROTTLED':>9} {'CONCURRENCY':>11} {'WARM':>5}",
    ]
    functions = sorted(
        document["Functions"], key=lambda f: (-f["InvocationsPerSecond"], f["FunctionName"])
    )
    for function in functions:
        lines.append(
            f"{function['FunctionName']:<40} {function['InvocationsPerSecond']:>8.2f} "
            f"{_ms(function['DurationP50']):>9} {_ms(function['DurationP99']):>9} "
            f"{function['ErrorRate'] * 100:>6.1f}% {function['Throttles']:>9} "
            f"{function['ConcurrentExecutions']:>11} {function['WarmEnvironments']:>5}"
        )
    if not functions:
        lines.append("No functions have run recently or hold warm environments.")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
