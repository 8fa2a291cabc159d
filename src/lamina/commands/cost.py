"""`lamina cost [--since WHEN] [FUNCTION]`: requests, GB-seconds and what they would cost on AWS.

Usage comes from the server (`/_lamina/usage`, kept per minute in its metrics database, so
it survives restarts); prices come from this command's settings (LAMINA_PRICE_*), so the
same usage can be priced for another region or a negotiated rate without touching the server.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from lamina.commands.remote import Remote, RemoteError
from lamina.observability.billing import Prices, month_start, parse_since
from lamina.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("function", nargs="?", help="one function's use (default: every function)")
    parser.add_argument(
        "--since",
        help="from when: 30m, 12h, 7d, or an ISO date/time in UTC (default: start of this month)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--endpoint", help="Lamina's address (default: from LAMINA_* settings)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        since = parse_since(args.since) if args.since else month_start()
    except ValueError as error:
        print(f"lamina cost: {error}", file=sys.stderr)
        return 2
    function = args.function.split(":function:")[-1].split(":")[0] if args.function else None
    params = {"since": str(since.timestamp())}
    if function:
        params["function"] = function
    try:
        usage = Remote(args.endpoint or settings.endpoint, settings).get_json(
            "/_lamina/usage", params
        )["Usage"]
    except RemoteError as error:
        print(f"lamina cost: {error}", file=sys.stderr)
        return 1
    prices = Prices.from_settings(settings)
    rows = [_priced(row, prices) for row in usage]
    if args.json:
        total = sum(row["Cost"] for row in rows)
        print(json.dumps({"Since": since.isoformat(), "Usage": rows, "TotalCost": total}, indent=2))
        return 0
    print_table(rows, since, function, prices)
    return 0


def _priced(row: dict[str, Any], prices: Prices) -> dict[str, Any]:
    requests_cost = row["Requests"] * prices.request
    compute_cost = row["GBSeconds"] * prices.gb_second(row["Architecture"])
    return {
        **row,
        "RequestCost": requests_cost,
        "ComputeCost": compute_cost,
        "Cost": requests_cost + compute_cost,
    }


def print_table(
    rows: list[dict[str, Any]], since: datetime, function: str | None, prices: Prices
) -> None:
    when = since.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    subject = function or "all functions"
    print(f"Lambda usage of {subject} since {when}, at AWS list prices (free tier not deducted)")
    if not rows:
        print("No invocations in that time.")
        return
    print(
        f"{'FUNCTION':<40} {'ARCH':<7} {'MEMORY':>8} {'REQUESTS':>10} {'BILLED':>12} "
        f"{'GB-SECONDS':>12} {'COST (USD)':>14}"
    )
    for row in rows:
        print(
            f"{row['FunctionName']:<40} {row['Architecture']:<7} {row['MemorySize']:>5} MB "
            f"{row['Requests']:>10} {row['BilledDurationMs'] / 1000:>11.3f}s "
            f"{row['GBSeconds']:>12.4f} {_dollars(row['Cost']):>14}"
        )
    print(
        f"{'TOTAL':<40} {'':<7} {'':>8} {sum(r['Requests'] for r in rows):>10} "
        f"{sum(r['BilledDurationMs'] for r in rows) / 1000:>11.3f}s "
        f"{sum(r['GBSeconds'] for r in rows):>12.4f} {_dollars(sum(r['Cost'] for r in rows)):>14}"
    )
    print(
        f"Prices: ${_plain(prices.request * 1_000_000)} per 1M requests; "
        f"${_plain(prices.gb_second_x86)} per GB-second on x86_64, "
        f"${_plain(prices.gb_second_arm64)} on arm64."
    )


def _plain(price: float) -> str:
    """A price without exponent: 0.0000166667, not 1.66667e-05."""
    return f"{price:.10f}".rstrip("0").rstrip(".")


def _dollars(value: float) -> str:
    # Lamina-sized workloads cost fractions of a cent: show enough digits to see them.
    return f"${value:.2f}" if value >= 100 else f"${value:.7f}"
