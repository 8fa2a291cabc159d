"""The Monitor tab: graphs of the function's CloudWatch metrics (read through the
CloudWatch API, so the same authorisation applies), the cost of the period, and a live log
tail with a filter pattern over server-sent events (CloudWatch Logs' FilterLogEvents)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.to_thread
from starlette.responses import JSONResponse, Response, StreamingResponse

from lamina.console.api_calls import ApiError
from lamina.console.authorization import READ_METRICS
from lamina.console.pages.function import function_name, get_function, render_tab
from lamina.console.web import Visit
from lamina.observability.billing import gb_seconds

PERIODS = {"1h": 60, "3h": 180, "12h": 720, "1d": 1440}
# (id, title, metric, statistic, unit shown)
CHARTS = (
    ("invocations", "Invocations", "Invocations", "Sum", "count"),
    ("errors", "Errors", "Errors", "Sum", "count"),
    ("throttles", "Throttles", "Throttles", "Sum", "count"),
    ("p50", "Duration p50", "Duration", "p50", "ms"),
    ("p99", "Duration p99", "Duration", "p99", "ms"),
    ("concurrent", "Concurrent executions", "ConcurrentExecutions", "Maximum", "count"),
    ("age", "Async event age", "AsyncEventAge", "Maximum", "ms"),
)
# How long one log tail stream runs before the browser reconnects (EventSource does, and
# resumes from the Last-Event-ID it saw): short, so a server stopping never waits long.
_TAIL_S = 60.0
_TAIL_POLL_S = 1.0


def _minutes(visit: Visit) -> tuple[str, int]:
    period = visit.request.query_params.get("period", "1h")
    return (period, PERIODS[period]) if period in PERIODS else ("1h", 60)


async def show(visit: Visit) -> Response:
    name = function_name(visit)
    function = await get_function(visit, name)
    period, _ = _minutes(visit)
    return render_tab(
        visit,
        "monitor",
        function,
        charts=CHARTS,
        periods=PERIODS,
        period=period,
        filter=visit.request.query_params.get("filter", ""),
    )


async def data(visit: Visit) -> Response:
    """The charts' series (uPlot's shape: timestamps and values) and the period's cost."""
    name = function_name(visit)
    period, minutes = _minutes(visit)
    end = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(minutes=minutes)
    queries = [
        {
            "Id": chart_id,
            "Label": title,
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/Lambda",
                    "MetricName": metric,
                    "Dimensions": [{"Name": "FunctionName", "Value": name}],
                },
                "Period": 60,
                "Stat": stat,
            },
        }
        for chart_id, title, metric, stat, _ in CHARTS
    ]
    answer = await visit.call(
        "cloudwatch",
        "GetMetricData",
        MetricDataQueries=queries,
        StartTime=start,
        EndTime=end,
        ScanBy="TimestampAscending",
    )
    series: dict[str, dict[str, list[float]]] = {}
    for result in answer.get("MetricDataResults", []):
        points = sorted(
            zip(
                (stamp.timestamp() for stamp in result.get("Timestamps", [])),
                result.get("Values", []),
                strict=False,
            )
        )
        series[result["Id"]] = {
            "timestamps": [point[0] for point in points],
            "values": [point[1] for point in points],
        }
    return JSONResponse(
        {
            "period": period,
            "start": start.timestamp(),
            "end": end.timestamp(),
            "series": series,
            "cost": await _cost(visit, name, start),
        }
    )


async def _cost(visit: Visit, name: str, start: datetime) -> dict[str, Any]:
    """Requests and GB-seconds since `start`, priced at the server's list prices."""
    visit.check(READ_METRICS, name)
    deps = visit.console.deps
    telemetry = deps.telemetry

    def read() -> list[Any]:
        telemetry.flush()  # what this node observed until now, as `/_lamina/usage` does
        return list(telemetry.store.usage(math.floor(start.timestamp() / 60), name))

    rows = await anyio.to_thread.run_sync(read)
    requests = sum(row.requests for row in rows)
    seconds = sum(gb_seconds(row.memory_mb, row.billed_ms) for row in rows)
    dollars = sum(
        deps.prices.cost(row.architecture, row.requests, gb_seconds(row.memory_mb, row.billed_ms))
        for row in rows
    )
    return {"requests": requests, "gb_seconds": round(seconds, 6), "usd": round(dollars, 8)}


async def log_tail(visit: Visit) -> Response:
    """Server-sent events: each new log line matching the filter pattern, as JSON."""
    name = function_name(visit)
    pattern = visit.request.query_params.get("filter", "")
    group = f"/aws/lambda/{name}"
    request = visit.request

    async def lines() -> AsyncIterator[str]:
        resumed = request.headers.get("last-event-id", "")
        since = int(resumed) if resumed.isdigit() else int((time.time() - 60) * 1000)
        seen: set[str] = set()
        started = time.monotonic()
        yield "retry: 2000\n\n"
        while time.monotonic() - started < _TAIL_S:
            if await request.is_disconnected():
                return
            try:
                events = await _filter(visit, group, pattern, since)
            except ApiError as error:
                if error.code != "ResourceNotFoundException":  # no log group yet: wait
                    payload = {"code": error.code, "message": error.message}
                    yield f"event: problem\ndata: {json.dumps(payload)}\n\n"
                    return
                events = []
            for event in events:
                if event["eventId"] in seen:
                    continue
                seen.add(event["eventId"])
                since = max(since, int(event["timestamp"]))
                line = {"timestamp": event["timestamp"], "message": event["message"]}
                yield f"id: {since}\ndata: {json.dumps(line)}\n\n"
            if len(seen) > 10_000:
                seen.clear()  # `since` alone then keeps repeats to the last millisecond
            await anyio.sleep(_TAIL_POLL_S)

    return StreamingResponse(
        lines(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _filter(visit: Visit, group: str, pattern: str, since: int) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"logGroupName": group, "startTime": since, "limit": 500}
    if pattern:
        params["filterPattern"] = pattern
    found: list[dict[str, Any]] = []
    for _ in range(5):  # at most a few pages a second: the rest come next time
        page = await visit.call("logs", "FilterLogEvents", **params)
        found.extend(page.get("events", []))
        token = page.get("nextToken")
        if not token:
            break
        params["nextToken"] = token
    return found
