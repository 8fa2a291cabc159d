"""Log benchmarks: ingest rate from chatty functions, FilterLogEvents over a million stored
lines, and what logging one line per call costs invoke throughput.

Run with `.venv/bin/python -m bench.logs` (or `make bench`). Prints figures; asserts nothing.
BENCH_LOG_LINES sets how many lines are stored before searching (default 1,000,000).
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ROLE, fresh_server, percentile, time_calls
from bench.invoke import package, throughput

MEMORY_MB = int(os.environ.get("BENCH_MEMORY_MB", "1769"))
TOTAL_LINES = int(os.environ.get("BENCH_LOG_LINES", "1000000"))
PER_INVOCATION = 200_000
CHATTY = """
import sys

def blocks(event, context):
    # A chatty function that writes its lines in blocks (a buffered logger, a bulk dump).
    n, tag = event["lines"], event["tag"]
    out = sys.stdout
    for start in range(0, n, 1000):
        out.write("".join(
            f"{tag} line {i} user={i % 997} status={'ERROR' if i % 1000 == 7 else 'ok'} "
            f"latency_ms={i % 250}\\n" for i in range(start, min(n, start + 1000))
        ))
    out.flush()
    return n

def prints(event, context):
    # The same lines, one print() each: every line is its own write to the pipe.
    for i in range(event["lines"]):
        print(f"{event['tag']} line {i} user={i % 997} latency_ms={i % 250}")
    return event["lines"]

def json_lines(event, context):
    import json
    for i in range(event["lines"]):
        print(json.dumps({"level": "ERROR" if i % 500 == 3 else "INFO", "i": i, "ms": i % 250}))
    return event["lines"]

def noop(event, context):
    return None

def one_line(event, context):
    print("handled one request")
    return None
"""


def create(client: Any, name: str, handler: str) -> None:
    client.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler=f"app.{handler}",
        MemorySize=MEMORY_MB,
        Timeout=900,
        Code={"ZipFile": package({"app.py": CHATTY})},
    )


def invoke(client: Any, name: str, payload: dict[str, Any]) -> None:
    response = client.invoke(FunctionName=name, Payload=json.dumps(payload).encode())
    body = response["Payload"].read()
    if "FunctionError" in response:
        raise RuntimeError(body)


def ingest(client: Any, logs: Any, name: str, lines: int, runs: int) -> float:
    """Lines per second from the invoke until every line is stored and readable."""
    rates = []
    for run in range(runs):
        started = time.perf_counter()
        invoke(client, name, {"lines": lines, "tag": f"run{run}"})
        # Any read flushes the sink first: it returns once everything written is stored.
        logs.describe_log_streams(logGroupName=f"/aws/lambda/{name}", limit=1)
        rates.append(lines / (time.perf_counter() - started))
    return statistics.median(rates)


def text_cases() -> dict[str, dict[str, Any]]:
    now = int(time.time() * 1000)
    return {
        "no pattern, first page (10,000 events)": {},
        "common term, first page": {"filterPattern": "ok"},
        "rare term (1 in 1,000 lines), first page": {"filterPattern": "ERROR"},
        "absent term (scans every line)": {"filterPattern": "no-such-term"},
        "term AND exclusion": {"filterPattern": "status=ERROR -user=7"},
        "narrow time range (last 2 s)": {"startTime": now - 2000},
    }


def search_benchmarks(logs: Any, group: str, cases: dict[str, dict[str, Any]]) -> None:
    for label, params in cases.items():
        search = functools.partial(logs.filter_log_events, logGroupName=group, **params)
        samples = time_calls(search, 5, warmup=0)
        found = len(logs.filter_log_events(logGroupName=group, **params)["events"])
        print(
            f"  FilterLogEvents {label:<42} p50 {percentile(samples, 0.5):8.1f} ms   "
            f"max {max(samples):8.1f} ms   ({found} events)"
        )


def invoke_overhead(client: Any, port: int) -> None:
    create(client, "bench-noop", "noop")
    create(client, "bench-one-line", "one_line")
    for name in ("bench-noop", "bench-one-line"):
        invoke(client, name, {})
    # Alternating rounds, medians: the machine may be shared, and a burst of someone else's
    # work should not land on one side only.
    for concurrency in (1, 8):
        rates: dict[str, list[float]] = {"bench-noop": [], "bench-one-line": []}
        for _ in range(5):
            for name, samples in rates.items():
                result = throughput(port, name, concurrency, 2000)
                samples.append(result["requests"] / result["seconds"])
        noop = statistics.median(rates["bench-noop"])
        one = statistics.median(rates["bench-one-line"])
        print(
            f"  concurrency {concurrency}: no-op {noop:7.0f}/s   one print per call {one:7.0f}/s"
            f"   cost {100 * (1 - one / noop):5.1f}% (medians of 5 alternating rounds)"
        )


def main() -> None:
    with fresh_server(env={"LAMINA_IDLE_TIMEOUT": "900"}) as server:
        print(f"Lamina log benchmarks, {os.cpu_count()} cores, MemorySize={MEMORY_MB} MB")
        client = server.client("lambda", read_timeout=900)
        logs = server.client("logs", read_timeout=900)
        create(client, "chatty-blocks", "blocks")
        create(client, "chatty-prints", "prints")
        create(client, "chatty-json", "json_lines")
        invoke(client, "chatty-blocks", {"lines": 10, "tag": "warm"})
        invoke(client, "chatty-prints", {"lines": 10, "tag": "warm"})
        print("Ingest (invoke start until every line is stored):")
        rate = ingest(client, logs, "chatty-prints", 50_000, 3)
        print(f"  one print() per line:   {rate:10,.0f} lines/s")
        rate = ingest(client, logs, "chatty-blocks", PER_INVOCATION, 3)
        print(f"  lines written in blocks: {rate:9,.0f} lines/s")
        stored = 3 * PER_INVOCATION + 10
        started = time.perf_counter()
        while stored < TOTAL_LINES:
            lines = min(PER_INVOCATION, TOTAL_LINES - stored)
            invoke(client, "chatty-blocks", {"lines": lines, "tag": "fill"})
            stored += lines
        logs.describe_log_streams(logGroupName="/aws/lambda/chatty-blocks", limit=1)
        print(f"  (filled to {stored:,} lines in {time.perf_counter() - started:.1f} s more)")
        print(f"Search over {stored:,} stored lines of one group:")
        search_benchmarks(logs, "/aws/lambda/chatty-blocks", text_cases())
        invoke(client, "chatty-json", {"lines": 100_000})
        print("Search over 100,000 JSON lines (parsed in Python after an SQL prefilter):")
        json_case = {
            '{ $.level = "ERROR" }, first page': {"filterPattern": '{ $.level = "ERROR" }'}
        }
        search_benchmarks(logs, "/aws/lambda/chatty-json", json_case)
        print("Invoke throughput, no-op vs one print per call:")
        invoke_overhead(client, server.port)
        size = sum(p.stat().st_size for p in server.data_dir.glob("logs.db*") if p.is_file())
        print(f"Log store on disk: {size / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
