"""`lamina tune FUNCTION --payload FILE`: power tuning, the built-in answer to
aws-lambda-power-tuning.

The function is copied (same code, runtime, handler, layers, environment, timeout and
architecture) to a temporary function, so the user's own configuration, versions and
traffic are never touched. The copy is run at each memory size: one warm-up invocation
(a cold start after every configuration change, which production traffic rarely sees), then
`--runs` measured ones whose Duration and Billed Duration are read from the REPORT line
(`LogType=Tail`). The table prices each size at AWS's list prices and marks the cheapest
and the fastest. The copy is deleted at the end, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import statistics
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamina.commands.remote import Remote
from lamina.observability.billing import Prices, gb_seconds
from lamina.settings import Settings

DEFAULT_MEMORY = (128, 256, 512, 1024, 1769, 3008)
_MEMORY_MIN, _MEMORY_MAX = 128, 10240
_TEXT_REPORT = re.compile(r"\tDuration: ([\d.]+) ms\tBilled Duration: (\d+) ms")
_JSON_REPORT = re.compile(r'"durationMs":\s*([\d.]+).*?"billedDurationMs":\s*(\d+)')
_UPDATE_WAIT_S = 60.0


class TuneError(RuntimeError):
    """Tuning cannot go on; the message says why."""


@dataclass(frozen=True)
class Setting:
    """The measurements at one memory size."""

    memory_mb: int
    durations_ms: list[float]
    billed_ms: list[int]

    @property
    def average_ms(self) -> float:
        return statistics.fmean(self.durations_ms)

    @property
    def average_billed_ms(self) -> float:
        return statistics.fmean(self.billed_ms)

    def cost(self, prices: Prices, architecture: str) -> float:
        """The list price of one invocation at the average billed duration."""
        return prices.cost(architecture, 1, gb_seconds(self.memory_mb, self.average_billed_ms))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("function", help="the function to tune (name or ARN, $LATEST is used)")
    parser.add_argument("--payload", help="a file with the event to send (default: {})")
    parser.add_argument(
        "--memory",
        help="memory sizes in MB, comma-separated (default: "
        + ",".join(str(size) for size in DEFAULT_MEMORY)
        + ")",
    )
    parser.add_argument(
        "--runs", type=int, default=5, help="measured invocations per size (default 5)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--endpoint", help="Lamina's address (default: from LAMINA_* settings)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        sizes = _sizes(args.memory)
        if args.runs < 1:
            raise TuneError("--runs must be at least 1")
        payload = Path(args.payload).read_bytes() if args.payload else b"{}"
        remote = Remote(args.endpoint or settings.endpoint, settings)
        client = remote.client("lambda", read_timeout=960)
        name = args.function.split(":function:")[-1].split(":")[0]
        results, config = tune(client, name, payload, sizes, args.runs)
    except (TuneError, OSError, BotoCoreError, ClientError) as error:
        print(f"lamina tune: {error}", file=sys.stderr)
        return 1
    prices = Prices.from_settings(settings)
    architecture = (config.get("Architectures") or ["x86_64"])[0]
    if args.json:
        print(json.dumps(_document(results, prices, architecture, args.runs), indent=2))
    else:
        print_table(name, config, results, prices, architecture, args.runs)
    return 0


def tune(
    client: Any, name: str, payload: bytes, sizes: list[int], runs: int
) -> tuple[list[Setting], dict[str, Any]]:
    function = client.get_function(FunctionName=name)
    config = function["Configuration"]
    if config.get("PackageType", "Zip") != "Zip":
        raise TuneError(f"{name} is not a .zip function; only those can be tuned")
    with urllib.request.urlopen(function["Code"]["Location"], timeout=120) as response:
        archive = response.read()
    copy = f"{name[:46]}-tune-{uuid.uuid4().hex[:12]}"
    client.create_function(**_copy_params(config, copy, archive))
    try:
        _wait(client, copy)
        results = []
        for size in sizes:
            client.update_function_configuration(FunctionName=copy, MemorySize=size)
            _wait(client, copy)
            _invoke(client, copy, payload)  # the warm-up: a cold start, not measured
            durations, billed = [], []
            for _ in range(runs):
                duration, billed_ms = _invoke(client, copy, payload)
                durations.append(duration)
                billed.append(billed_ms)
            results.append(Setting(size, durations, billed))
        return results, config
    finally:
        client.delete_function(FunctionName=copy)


def _copy_params(config: dict[str, Any], copy: str, archive: bytes) -> dict[str, Any]:
    params: dict[str, Any] = {
        "FunctionName": copy,
        "Role": config["Role"],
        "Code": {"ZipFile": archive},
        "Description": f"lamina tune: temporary copy of {config['FunctionName']}",
        "Timeout": config.get("Timeout", 3),
        "MemorySize": config.get("MemorySize", 128),
        "Architectures": config.get("Architectures") or ["x86_64"],
    }
    for key in ("Runtime", "Handler"):
        if config.get(key):
            params[key] = config[key]
    if config.get("Layers"):
        params["Layers"] = [layer["Arn"] for layer in config["Layers"]]
    variables = (config.get("Environment") or {}).get("Variables")
    if variables:
        params["Environment"] = {"Variables": variables}
    if config.get("EphemeralStorage"):
        params["EphemeralStorage"] = config["EphemeralStorage"]
    return params


def _wait(client: Any, name: str) -> None:
    deadline = time.monotonic() + _UPDATE_WAIT_S
    while True:
        config = client.get_function_configuration(FunctionName=name)
        if config.get("State", "Active") == "Failed":
            raise TuneError(f"the copy failed to deploy: {config.get('StateReason')}")
        if config.get("LastUpdateStatus") == "Failed":
            raise TuneError(f"the copy failed to update: {config.get('LastUpdateStatusReason')}")
        if config.get("State", "Active") == "Active" and config.get("LastUpdateStatus") in (
            None,
            "Successful",
        ):
            return
        if time.monotonic() > deadline:
            raise TuneError(f"the copy was not ready after {_UPDATE_WAIT_S:.0f} s")
        time.sleep(0.2)


def _invoke(client: Any, name: str, payload: bytes) -> tuple[float, int]:
    response = client.invoke(FunctionName=name, Payload=payload, LogType="Tail")
    body = response["Payload"].read()
    if response.get("FunctionError"):
        raise TuneError(
            f"the function failed ({response['FunctionError']}): "
            f"{body.decode('utf-8', 'replace')[:500]}"
        )
    log = base64.b64decode(response.get("LogResult", "")).decode("utf-8", "replace")
    match = _TEXT_REPORT.search(log) or _JSON_REPORT.search(log)
    if match is None:
        raise TuneError("no REPORT line in the invocation's log tail")
    return float(match.group(1)), int(match.group(2))


def _sizes(text: str | None) -> list[int]:
    if not text:
        return list(DEFAULT_MEMORY)
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise TuneError(f"--memory takes sizes in MB such as 128,512,1024, not {text!r}") from None
    wrong = [size for size in sizes if not _MEMORY_MIN <= size <= _MEMORY_MAX]
    if not sizes or wrong:
        raise TuneError(f"memory sizes must be {_MEMORY_MIN} to {_MEMORY_MAX} MB")
    return sizes


def _picks(results: list[Setting], prices: Prices, architecture: str) -> tuple[int, int]:
    """The cheapest and the fastest memory size; ties go to the smaller size."""
    cheapest = min(results, key=lambda r: (round(r.cost(prices, architecture), 12), r.memory_mb))
    fastest = min(results, key=lambda r: (r.average_ms, r.memory_mb))
    return cheapest.memory_mb, fastest.memory_mb


def _document(
    results: list[Setting], prices: Prices, architecture: str, runs: int
) -> dict[str, Any]:
    cheapest, fastest = _picks(results, prices, architecture)
    return {
        "Architecture": architecture,
        "Runs": runs,
        "Settings": [
            {
                "MemorySize": r.memory_mb,
                "AverageDurationMs": r.average_ms,
                "AverageBilledDurationMs": r.average_billed_ms,
                "CostPerInvocation": r.cost(prices, architecture),
            }
            for r in results
        ],
        "Cheapest": cheapest,
        "Fastest": fastest,
    }


def print_table(
    name: str,
    config: dict[str, Any],
    results: list[Setting],
    prices: Prices,
    architecture: str,
    runs: int,
) -> None:
    cheapest, fastest = _picks(results, prices, architecture)
    runtime = config.get("Runtime") or config.get("PackageType", "")
    print(
        f"Power tuning {name} ({runtime}, {architecture}): {runs} runs per memory size "
        "after one warm-up"
    )
    print(
        f"{'MEMORY':>8} {'AVG DURATION':>13} {'AVG BILLED':>11} {'COST/INVOCATION':>16} "
        f"{'COST/1M':>10}"
    )
    for r in results:
        cost = r.cost(prices, architecture)
        marks = [
            label
            for label, size in (("cheapest", cheapest), ("fastest", fastest))
            if size == r.memory_mb
        ]
        print(
            f"{r.memory_mb:>5} MB {r.average_ms:>10.2f} ms {r.average_billed_ms:>8.1f} ms "
            f"{'$' + format(cost, '.10f'):>16} {'$' + format(cost * 1_000_000, '.2f'):>10}"
            + (f"  <- {', '.join(marks)}" if marks else "")
        )
    by_size = {r.memory_mb: r for r in results}
    print(
        f"Cheapest: {cheapest} MB (${by_size[cheapest].cost(prices, architecture):.10f} per "
        f"invocation, {by_size[cheapest].average_ms:.2f} ms)"
    )
    print(
        f"Fastest: {fastest} MB ({by_size[fastest].average_ms:.2f} ms, "
        f"${by_size[fastest].cost(prices, architecture):.10f} per invocation)"
    )
