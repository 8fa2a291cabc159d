"""The Test tab: saved test events, templates of the events Lamina's triggers send, and an
invocation showing its result, its log tail and the REPORT line's figures."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from starlette.responses import Response

from lamina.console.api_calls import ApiError
from lamina.console.authorization import CHANGE_FUNCTION, READ_FUNCTION
from lamina.console.pages.function import function_name, get_function, render_tab
from lamina.console.web import Visit
from lamina.errors import LaminaError

_REPORT = re.compile(
    r"REPORT RequestId: \S+\s+Duration: (?P<duration>[\d.]+) ms\s+"
    r"Billed Duration: (?P<billed>\d+) ms\s+Memory Size: (?P<size>\d+) MB\s+"
    r"Max Memory Used: (?P<used>\d+) MB(?:\s+Init Duration: (?P<init>[\d.]+) ms)?"
)
_JSON_REPORT = re.compile(r'"type":\s*"platform\.report"')


@dataclass(frozen=True)
class Report:
    """The figures of an invocation's REPORT line."""

    duration_ms: float
    billed_ms: int
    memory_mb: int
    max_memory_mb: int
    init_ms: float | None

    @classmethod
    def find(cls, log: str) -> Report | None:
        match = _REPORT.search(log)
        if match is None:
            return _json_report(log)
        init = match["init"]
        return cls(
            float(match["duration"]),
            int(match["billed"]),
            int(match["size"]),
            int(match["used"]),
            float(init) if init else None,
        )


def _json_report(log: str) -> Report | None:
    """The JSON log format's platform.report record (LoggingConfig LogFormat=JSON)."""
    for line in log.splitlines():
        if not _JSON_REPORT.search(line):
            continue
        try:
            metrics = json.loads(line)["record"]["metrics"]
        except (ValueError, KeyError, TypeError):
            continue
        return Report(
            float(metrics.get("durationMs", 0)),
            int(metrics.get("billedDurationMs", 0)),
            int(metrics.get("memorySizeMB", 0)),
            int(metrics.get("maxMemoryUsedMB", 0)),
            metrics.get("initDurationMs"),
        )
    return None


async def show(
    visit: Visit,
    error: ApiError | None = None,
    body: str | None = None,
    outcome: dict[str, Any] | None = None,
) -> Response:
    name = function_name(visit)
    function = await get_function(visit, name)
    deps = visit.console.deps
    visit.check(READ_FUNCTION, name)
    saved = await anyio.to_thread.run_sync(deps.saved_events.list, name)
    query = visit.request.query_params
    chosen_event = query.get("event")
    chosen_template = query.get("template")
    event_name = ""
    if body is None:
        body = "{}"
        if chosen_event:
            for event in saved:
                if event.name == chosen_event:
                    body, event_name = event.body, event.name
        elif chosen_template in deps.event_templates:
            built = deps.event_template(chosen_template, deps.account, name)
            body = json.dumps(built, indent=2)
    return render_tab(
        visit,
        "test",
        function,
        status=400 if error else 200,
        saved=saved,
        templates=deps.event_templates,
        body=body,
        event_name=visit.form.get("event_name", event_name),
        error=error,
        outcome=outcome,
    )


async def invoke(visit: Visit) -> Response:
    """The invocation's result (or the API's refusal): a fragment for htmx, else the whole
    tab with it (a browser without JavaScript posts the form)."""
    outcome = await _invoke(visit)
    if visit.request.headers.get("hx-request"):
        return visit.render("test_result.html", **outcome)
    return await show(visit, body=visit.form.get("body", ""), outcome=outcome)


async def _invoke(visit: Visit) -> dict[str, Any]:
    name = function_name(visit)
    body = visit.form.get("body", "") or "{}"
    try:
        json.loads(body)
    except ValueError as error:
        return {"error": _bad_json(error), "result": None}
    try:
        answer = await visit.call(
            "lambda",
            "Invoke",
            FunctionName=name,
            Payload=body.encode(),
            LogType="Tail",
            Qualifier=visit.form.get("qualifier") or None,
        )
    except ApiError as error:
        return {"error": error, "result": None}
    log = base64.b64decode(answer.get("LogResult") or b"").decode("utf-8", errors="replace")
    payload = answer.get("Payload", b"")
    payload_text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
    with contextlib.suppress(ValueError):  # not JSON: shown as it came
        payload_text = json.dumps(json.loads(payload_text), indent=2)
    return {
        "error": None,
        "result": {
            "status": answer.get("StatusCode"),
            "function_error": answer.get("FunctionError"),
            "version": answer.get("ExecutedVersion"),
            "payload": payload_text,
            "log": log,
            "report": Report.find(log),
        },
    }


async def save(visit: Visit) -> Response:
    name = function_name(visit)
    visit.check(CHANGE_FUNCTION, name)
    event_name = visit.form.get("event_name", "").strip()
    body = visit.form.get("body", "")
    try:
        await anyio.to_thread.run_sync(visit.console.deps.saved_events.save, name, event_name, body)
    except LaminaError as error:
        return await show(visit, ApiError(error.code, error.message, error.status), body)
    return visit.redirect(
        f"/functions/{name}/test?event={event_name}", f"Saved the test event {event_name}."
    )


async def delete(visit: Visit) -> Response:
    name = function_name(visit)
    visit.check(CHANGE_FUNCTION, name)
    event_name = str(visit.request.path_params["event"])
    try:
        await anyio.to_thread.run_sync(visit.console.deps.saved_events.delete, name, event_name)
    except LaminaError as error:
        raise ApiError(error.code, error.message, error.status) from error
    return visit.redirect(f"/functions/{name}/test", f"Deleted the test event {event_name}.")


def _bad_json(error: ValueError) -> ApiError:
    return ApiError("InvalidRequestContentException", f"The event is not valid JSON: {error}", 400)
