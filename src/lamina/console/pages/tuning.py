"""The Power tuning tab: what `lamina tune` does, from the page. A copy of the function
(same code and settings) runs at each memory size, one warm-up then the measured runs; the
REPORT lines give duration and billed duration, priced at the server's list prices. The
copy is deleted at the end, whatever happens; the function itself is never touched."""

from __future__ import annotations

import base64
import contextlib
import json
import statistics
import uuid
from dataclasses import dataclass
from typing import Any

import anyio
from markupsafe import Markup
from starlette.responses import Response

from lamina.console.api_calls import ApiError
from lamina.console.pages.function import function_name, get_function, render_tab
from lamina.console.pages.test import Report
from lamina.console.web import Visit
from lamina.observability.billing import gb_seconds

DEFAULT_SIZES = "128, 256, 512, 1024"
MAX_SIZES, MAX_RUNS = 8, 10
_READY_WAIT_S, _POLL_S = 60.0, 0.2
_COPIED = ("Runtime", "Handler", "Role", "Timeout", "Architectures")


@dataclass(frozen=True)
class Measured:
    memory_mb: int
    average_ms: float
    billed_ms: float
    cost_usd: float  # per invocation


async def show(
    visit: Visit,
    results: list[Measured] | None = None,
    error: ApiError | None = None,
) -> Response:
    name = function_name(visit)
    function = await get_function(visit, name)
    cheapest = min(results, key=lambda m: m.cost_usd) if results else None
    fastest = min(results, key=lambda m: m.average_ms) if results else None
    return render_tab(
        visit,
        "tuning",
        function,
        status=400 if error else 200,
        results=results or [],
        cheapest=cheapest,
        fastest=fastest,
        chart=_chart(results) if results else None,
        error=error,
        sizes=visit.form.get("sizes", DEFAULT_SIZES),
        runs=visit.form.get("runs", "3"),
        payload=visit.form.get("payload", "{}"),
    )


async def run(visit: Visit) -> Response:
    name = function_name(visit)
    try:
        sizes, runs, payload = _settings(visit.form)
        results = await _tune(visit, name, sizes, runs, payload)
    except ApiError as error:
        return await show(visit, error=error)
    return await show(visit, results)


def _settings(form: dict[str, str]) -> tuple[list[int], int, bytes]:
    try:
        sizes = sorted({int(part) for part in form.get("sizes", "").replace(",", " ").split()})
        runs = int(form.get("runs", "3"))
        json.loads(form.get("payload", "{}") or "{}")
    except ValueError as error:
        raise ApiError("InvalidParameterValueException", f"Check the form: {error}", 400) from None
    if not sizes or len(sizes) > MAX_SIZES or not 1 <= runs <= MAX_RUNS:
        raise ApiError(
            "InvalidParameterValueException",
            f"Give 1 to {MAX_SIZES} memory sizes and 1 to {MAX_RUNS} runs per size.",
            400,
        )
    return sizes, runs, (form.get("payload", "{}") or "{}").encode()


async def _tune(
    visit: Visit, name: str, sizes: list[int], runs: int, payload: bytes
) -> list[Measured]:
    original = await get_function(visit, name)
    config = original["Configuration"]
    location = original.get("Code", {}).get("Location")
    if not location:
        raise ApiError("InvalidParameterValueException", "Only .zip functions can be tuned.", 400)
    copy = f"{name[:40]}-tune-{uuid.uuid4().hex[:8]}"
    params: dict[str, Any] = {k: config[k] for k in _COPIED if k in config}
    params["Code"] = {"ZipFile": await visit.console.calls.download(location)}
    params["MemorySize"] = sizes[0]
    if config.get("Environment", {}).get("Variables"):
        params["Environment"] = {"Variables": config["Environment"]["Variables"]}
    if config.get("Layers"):
        params["Layers"] = [layer["Arn"] for layer in config["Layers"]]
    await visit.call("lambda", "CreateFunction", FunctionName=copy, **params)
    prices = visit.console.deps.prices
    architecture = (config.get("Architectures") or ["x86_64"])[0]
    results: list[Measured] = []
    try:
        for size in sizes:
            if size != sizes[0]:
                await visit.call(
                    "lambda", "UpdateFunctionConfiguration", FunctionName=copy, MemorySize=size
                )
            await _ready(visit, copy)
            await _invoke(visit, copy, payload)  # the warm-up: a cold start
            reports = [await _invoke(visit, copy, payload) for _ in range(runs)]
            average_ms = statistics.fmean(r.duration_ms for r in reports)
            billed = statistics.fmean(r.billed_ms for r in reports)
            cost = prices.cost(architecture, 1, gb_seconds(size, billed))
            results.append(Measured(size, average_ms, billed, cost))
    finally:
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(ApiError):  # already gone: nothing left to clean
                await visit.call("lambda", "DeleteFunction", FunctionName=copy)
    return results


async def _ready(visit: Visit, name: str) -> None:
    waited = 0.0
    while waited < _READY_WAIT_S:
        config = await visit.call("lambda", "GetFunctionConfiguration", FunctionName=name)
        if config.get("State") == "Active" and config.get("LastUpdateStatus") in (
            None,
            "Successful",
        ):
            return
        if config.get("State") == "Failed" or config.get("LastUpdateStatus") == "Failed":
            raise ApiError("ResourceConflictException", config.get("StateReason", "failed"), 409)
        await anyio.sleep(_POLL_S)
        waited += _POLL_S
    raise ApiError("ResourceConflictException", f"{name} did not become Active in time.", 409)


async def _invoke(visit: Visit, name: str, payload: bytes) -> Report:
    answer = await visit.call(
        "lambda", "Invoke", FunctionName=name, Payload=payload, LogType="Tail"
    )
    log = base64.b64decode(answer.get("LogResult") or b"").decode("utf-8", errors="replace")
    report = Report.find(log)
    if answer.get("FunctionError") or report is None:
        raise ApiError(
            "FunctionError",
            f"The function failed at this size ({answer.get('FunctionError')}): {log[-300:]}",
            400,
        )
    return report


def _chart(results: list[Measured]) -> Markup:
    """An SVG of average duration and cost per invocation against memory size."""
    width, height, pad = 640, 240, 40
    xs = [pad + i * (width - 2 * pad) / max(1, len(results) - 1) for i in range(len(results))]

    def line(values: list[float], colour: str, label: str) -> str:
        top = max(values) or 1.0
        ys = [height - pad - v / top * (height - 2 * pad) for v in values]
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
        dots = "".join(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>'
            for x, y in zip(xs, ys, strict=True)
        )
        return (
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>'
            f"{dots}<title>{label}</title>"
        )

    ticks = "".join(
        f'<text x="{x:.1f}" y="{height - 12}" text-anchor="middle" font-size="12">'
        f"{m.memory_mb} MB</text>"
        for x, m in zip(xs, results, strict=True)
    )
    svg = (
        f'<svg viewBox="0 0 {width} {height}" role="img" width="100%" '
        'aria-label="Average duration (blue) and cost per invocation (orange) by memory size">'
        + line([m.average_ms for m in results], "#0b63c5", "average duration")
        + line([m.cost_usd for m in results], "#d9731a", "cost per invocation")
        + ticks
        + "</svg>"
    )
    return Markup(svg)
