"""HTTP views of the telemetry: `/metrics` (Prometheus), `/_lamina/usage` (for `lamina
cost`) and `/_lamina/top` (for `lamina top`).

The two JSON endpoints are Lamina's own (no AWS API reports usage or live levels); when the
server requires signatures they require one too, made as for the Lambda API. `/metrics` is
open unless LAMINA_METRICS_TOKEN is set, because scrapers cannot sign requests.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable, Mapping

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lamina.api.pipeline import verify_signature
from lamina.errors import LaminaError
from lamina.identity.sigv4 import SigV4Verifier
from lamina.observability import prometheus
from lamina.observability.aggregation import RECENT_SECONDS
from lamina.observability.billing import gb_seconds
from lamina.observability.telemetry import Telemetry

USAGE_PATH = "/_lamina/usage"
TOP_PATH = "/_lamina/top"
AsyncSnapshot = Callable[[], Mapping[str, Mapping[str, Mapping[str, float]]]]


def routes(
    telemetry: Telemetry,
    async_snapshot: AsyncSnapshot,
    verifier: SigV4Verifier | None,
    metrics_token: str | None,
) -> list[Route]:
    async def scrape(request: Request) -> Response:
        if metrics_token is not None:
            offered = request.headers.get("authorization", "")
            if not hmac.compare_digest(offered.encode(), f"Bearer {metrics_token}".encode()):
                return Response("Unauthorized\n", status_code=401, media_type="text/plain")
        levels = telemetry.levels()  # on the loop, where the levels change
        snapshot = async_snapshot()
        totals = await anyio.to_thread.run_sync(telemetry.prometheus_totals)
        body, content_type = prometheus.render(
            totals, levels, snapshot, request.headers.get("accept", "")
        )
        return Response(body, headers={"Content-Type": content_type})

    async def usage(request: Request) -> Response:
        denied = _check(verifier, request)
        if denied is not None:
            return denied
        try:
            since = float(request.query_params.get("since", "0"))
        except ValueError:
            return _bad("since must be epoch seconds")
        function = request.query_params.get("function") or None

        def read() -> list[dict[str, object]]:
            telemetry.flush()
            return [
                {
                    "FunctionName": row.function,
                    "Architecture": row.architecture,
                    "MemorySize": row.memory_mb,
                    "Requests": row.requests,
                    "BilledDurationMs": row.billed_ms,
                    "DurationMs": round(row.duration_ms, 3),
                    "GBSeconds": gb_seconds(row.memory_mb, row.billed_ms),
                }
                for row in telemetry.store.usage(math.floor(since / 60), function)
            ]

        rows = await anyio.to_thread.run_sync(read)
        return JSONResponse({"Since": since, "Usage": rows})

    async def top(request: Request) -> Response:
        denied = _check(verifier, request)
        if denied is not None:
            return denied
        try:
            window = int(request.query_params.get("window", "10"))
        except ValueError:
            return _bad("window must be whole seconds")
        if not 1 <= window <= RECENT_SECONDS:
            return _bad(f"window must be 1 to {RECENT_SECONDS} seconds")
        levels = telemetry.levels()
        recent = await anyio.to_thread.run_sync(telemetry.recent, window)
        warm = dict(levels.environments)
        for function, _, _, held in levels.provisioned:
            warm[function] = warm.get(function, 0) + held
        functions = []
        for name in sorted(set(recent) | set(levels.in_flight) | set(warm)):
            stats = recent.get(name)
            invocations = stats.duration.count if stats else 0
            errors = stats.errors if stats else 0
            functions.append(
                {
                    "FunctionName": name,
                    "Invocations": invocations,
                    "InvocationsPerSecond": invocations / window,
                    "Errors": errors,
                    "ErrorRate": errors / invocations if invocations else 0.0,
                    "Throttles": stats.throttles if stats else 0,
                    "DurationP50": stats.duration.percentile(50) if stats else None,
                    "DurationP99": stats.duration.percentile(99) if stats else None,
                    "ConcurrentExecutions": levels.in_flight.get(name, 0),
                    "WarmEnvironments": warm.get(name, 0),
                }
            )
        return JSONResponse(
            {
                "Time": time.time(),
                "Window": window,
                "Account": {
                    "ConcurrentExecutions": levels.account_in_flight,
                    "UnreservedConcurrentExecutions": levels.unreserved_in_flight,
                    "ConcurrencyLimit": levels.account_limit,
                },
                "Functions": functions,
            }
        )

    return [
        Route(prometheus.PATH, scrape, methods=["GET"]),
        Route(USAGE_PATH, usage, methods=["GET"]),
        Route(TOP_PATH, top, methods=["GET"]),
    ]


def _check(verifier: SigV4Verifier | None, request: Request) -> Response | None:
    try:
        verify_signature(verifier, request, b"")
    except LaminaError as error:
        return JSONResponse(
            {"__type": error.code, "message": error.message}, status_code=error.status
        )
    return None


def _bad(message: str) -> Response:
    return JSONResponse({"__type": "InvalidParameterValueException", "message": message}, 400)
