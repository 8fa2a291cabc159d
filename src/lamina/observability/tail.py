"""`lamina logs FUNCTION`: a function's log events, optionally followed live, coloured the way
a terminal user expects (errors in red, warnings in yellow, platform lines dimmed).

It reads through the CloudWatch Logs API like any other client: FilterLogEvents from a start
time, then (with --follow) again from the newest timestamp seen, skipping events already
printed at that millisecond.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from lamina.observability.platform_log import iso_time
from lamina.settings import Settings

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SINCE = re.compile(r"^(\d+)([smhdw])$")
_PLATFORM = (
    "START ",
    "END ",
    "REPORT ",
    "INIT_START ",
    "INIT_REPORT ",
    "RESTORE_START ",
    "RESTORE_REPORT ",
    "XRAY ",
    '{"time"',
)
_ERROR = re.compile(
    r"\[ERROR\]|\[CRITICAL\]|\bERROR\b|\bFATAL\b|Traceback|Task timed out|"
    r"\"level\":\s*\"(ERROR|FATAL|CRITICAL)\"|Status: (timeout|error)|"
    r"\"status\":\s*\"(timeout|error|failure)\""
)
_WARNING = re.compile(r"\[WARNING\]|\bWARN(ING)?\b|\"level\":\s*\"WARN(ING)?\"")

RESET = "\x1b[0m"
DIM = "\x1b[2m"
RED = "\x1b[1;31m"
YELLOW = "\x1b[33m"
CYAN = "\x1b[36m"


def parse_since(text: str, now: float | None = None) -> int:
    """`10m`, `2h`, `1d`, `30s`, `1w`, or an ISO 8601 time; returns epoch milliseconds."""
    now = time.time() if now is None else now
    match = _SINCE.match(text.strip())
    if match:
        return int((now - int(match[1]) * _UNITS[match[2]]) * 1000)
    try:
        return int(datetime.fromisoformat(text.strip()).timestamp() * 1000)
    except ValueError:
        raise ValueError(
            f"--since takes a duration such as 30s, 10m, 2h, 1d or 1w, or an ISO 8601 time; "
            f"got {text!r}"
        ) from None


def wants_colour(choice: str, stream: TextIO, environ: dict[str, str]) -> bool:
    if choice != "auto":
        return choice == "always"
    # https://no-color.org: any non-empty NO_COLOR turns colour off.
    return stream.isatty() and not environ.get("NO_COLOR")


@dataclass(frozen=True)
class Painter:
    colour: bool

    def render(self, event: dict[str, Any]) -> str:
        message = str(event["message"]).rstrip("\n")
        # Runtimes write a multi-line record as one line with carriage returns.
        message = message.replace("\r", "\n    ")
        stamp = iso_time(int(event["timestamp"]))
        stream = _short_stream(str(event.get("logStreamName", "")))
        if not self.colour:
            return f"{stamp} {stream} {message}"
        return f"{DIM}{stamp}{RESET} {CYAN}{stream}{RESET} {self._paint(message)}"

    @staticmethod
    def _paint(message: str) -> str:
        if _ERROR.search(message):
            return f"{RED}{message}{RESET}"
        if message.startswith(_PLATFORM):
            return f"{DIM}{message}{RESET}"
        if _WARNING.search(message):
            return f"{YELLOW}{message}{RESET}"
        return message


def _short_stream(name: str) -> str:
    """`2024/05/01/[$LATEST]<32 hex>` becomes `[$LATEST]<8 hex>`: enough to tell apart."""
    tail = name.rsplit("/", 1)[-1]
    if "]" in tail:
        version, _, environment = tail.partition("]")
        return f"{version}]{environment[:8]}"
    return tail


def events(client: Any, group: str, start_ms: int, pattern: str | None) -> Iterator[dict[str, Any]]:
    """Every event of the group from `start_ms` on, in time order, across pages."""
    params: dict[str, Any] = {"logGroupName": group, "startTime": start_ms}
    if pattern:
        params["filterPattern"] = pattern
    while True:
        page = client.filter_log_events(**params)
        yield from page.get("events", [])
        if not page.get("nextToken"):
            return
        params["nextToken"] = page["nextToken"]


def show(
    client: Any,
    group: str,
    start_ms: int,
    pattern: str | None,
    painter: Painter,
    out: TextIO,
    follow: bool,
    interval: float = 1.0,
) -> None:
    cursor, seen = start_ms, set[str]()
    while True:
        try:
            for event in events(client, group, cursor, pattern):
                if event["eventId"] in seen:
                    continue
                if event["timestamp"] > cursor:
                    cursor, seen = event["timestamp"], set()
                seen.add(event["eventId"])
                out.write(painter.render(event) + "\n")
        except ClientError as error:
            # Until a function first runs, its log group does not exist: keep waiting.
            if not follow or error.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
        out.flush()
        if not follow:
            return
        time.sleep(interval)


def log_group_of(lambda_client: Any, function: str) -> str:
    """The function's log group (LoggingConfig.LogGroup), or the default for its name."""
    try:
        config = lambda_client.get_function_configuration(FunctionName=function)
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        name = function.rpartition(":function:")[2].partition(":")[0]
        return f"/aws/lambda/{name}"
    group = (config.get("LoggingConfig") or {}).get("LogGroup")
    return str(group or f"/aws/lambda/{config['FunctionName']}")


def main(
    function: str,
    since: str,
    pattern: str | None,
    follow: bool,
    colour: str,
    clients: tuple[Any, Any],
    environ: dict[str, str],
    out: TextIO = sys.stdout,
) -> int:
    lambda_client, logs_client = clients
    try:
        start = parse_since(since)
    except ValueError as error:
        print(f"lamina: {error}", file=sys.stderr)
        return 2
    painter = Painter(wants_colour(colour, out, environ))
    try:
        group = log_group_of(lambda_client, function)
        show(logs_client, group, start, pattern, painter, out, follow)
    except ClientError as error:
        print(f"lamina: {error.response['Error'].get('Message', error)}", file=sys.stderr)
        return 1
    except BotoCoreError as error:  # e.g. no server listening at the endpoint
        print(f"lamina: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("function", help="a function name or ARN")
    parser.add_argument(
        "--follow", "-f", action="store_true", help="keep printing new events as they arrive"
    )
    parser.add_argument(
        "--since", default="10m", help="start this long ago: 30s, 10m, 2h, 1d (default 10m)"
    )
    parser.add_argument("--filter", help="a CloudWatch Logs filter pattern, e.g. ERROR")
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour output (auto: when printing to a terminal and NO_COLOR is unset)",
    )
    parser.add_argument("--endpoint", help="Lamina's address (default: from LAMINA_* settings)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    import boto3  # Lazy: only this subcommand talks to a server.
    from botocore.config import Config

    options: dict[str, Any] = {
        "endpoint_url": args.endpoint or settings.endpoint,
        "region_name": settings.region,
        # Without configured keys any will do: an unauthenticated Lamina ignores them.
        "aws_access_key_id": settings.access_key_id or "lamina",
        "aws_secret_access_key": settings.secret_access_key or "lamina",
        "config": Config(retries={"max_attempts": 3, "mode": "standard"}),
    }
    clients = (boto3.client("lambda", **options), boto3.client("logs", **options))
    return main(
        args.function, args.since, args.filter, args.follow, args.color, clients, dict(os.environ)
    )
