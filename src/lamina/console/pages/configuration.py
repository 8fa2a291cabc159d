"""The Configuration tab: general settings, environment, layers, concurrency and async
settings, each form one API call whose validation error is shown beside its field."""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import Response

from lamina.console.api_calls import ApiError
from lamina.console.pages.function import function_name, get_function, render_tab
from lamina.console.web import Visit

# AWS names the member at fault: "Value '20000' at 'memorySize' failed to satisfy ...".
_MEMBER = re.compile(r"at '(?P<member>[A-Za-z.]+)'")
_NUMBERS = {
    "memory": "MemorySize",
    "timeout": "Timeout",
    "ephemeral": "EphemeralStorage",
}


async def show(visit: Visit, errors: dict[str, ApiError] | None = None) -> Response:
    name = function_name(visit)
    function = await get_function(visit, name)
    event_invoke = await _optional(visit, "GetFunctionEventInvokeConfig", FunctionName=name)
    provisioned = await _optional(visit, "ListProvisionedConcurrencyConfigs", FunctionName=name)
    return render_tab(
        visit,
        "configuration",
        function,
        status=400 if errors else 200,
        errors=errors or {},
        values=visit.form,
        event_invoke=event_invoke or {},
        provisioned=(provisioned or {}).get("ProvisionedConcurrencyConfigs", []),
        field_of=field_of,
    )


async def _optional(visit: Visit, operation: str, **params: Any) -> dict[str, Any] | None:
    try:
        return await visit.call("lambda", operation, **params)
    except ApiError as error:
        if error.code == "ResourceNotFoundException":
            return None
        raise


def field_of(error: ApiError | None) -> str:
    """The API member an error names (`memorySize`), or "" when it names none."""
    if error is None:
        return ""
    match = _MEMBER.search(error.message)
    return match["member"].split(".")[0] if match else ""


async def update_general(visit: Visit) -> Response:
    name = function_name(visit)
    form = visit.form
    try:
        params: dict[str, Any] = {"FunctionName": name}
        for field, member in _NUMBERS.items():
            if form.get(field, "").strip():
                number = _whole(form[field], member)
                params[member] = {"Size": number} if member == "EphemeralStorage" else number
        for field, member in (("handler", "Handler"), ("runtime", "Runtime")):
            if form.get(field, "").strip():
                params[member] = form[field].strip()
        params["Description"] = form.get("description", "")
        params["Environment"] = {"Variables": _variables(form.get("environment", ""))}
        params["Layers"] = [
            line.strip() for line in form.get("layers", "").splitlines() if line.strip()
        ]
        await visit.call("lambda", "UpdateFunctionConfiguration", **params)
    except ApiError as error:
        return await show(visit, {"general": error})
    return visit.redirect(f"/functions/{name}/configuration", "Saved the configuration.")


async def update_concurrency(visit: Visit) -> Response:
    name = function_name(visit)
    form = visit.form
    try:
        reserved = form.get("reserved", "").strip()
        if reserved:
            await visit.call(
                "lambda",
                "PutFunctionConcurrency",
                FunctionName=name,
                ReservedConcurrentExecutions=_whole(reserved, "ReservedConcurrentExecutions"),
            )
        else:
            await visit.call("lambda", "DeleteFunctionConcurrency", FunctionName=name)
        qualifier = form.get("provisioned_qualifier", "").strip()
        amount = form.get("provisioned", "").strip()
        if qualifier and amount:
            number = _whole(amount, "ProvisionedConcurrentExecutions")
            if number:
                await visit.call(
                    "lambda",
                    "PutProvisionedConcurrencyConfig",
                    FunctionName=name,
                    Qualifier=qualifier,
                    ProvisionedConcurrentExecutions=number,
                )
            else:
                await visit.call(
                    "lambda",
                    "DeleteProvisionedConcurrencyConfig",
                    FunctionName=name,
                    Qualifier=qualifier,
                )
    except ApiError as error:
        return await show(visit, {"concurrency": error})
    return visit.redirect(f"/functions/{name}/configuration", "Saved the concurrency settings.")


async def update_async(visit: Visit) -> Response:
    name = function_name(visit)
    form = visit.form
    try:
        params: dict[str, Any] = {"FunctionName": name}
        if form.get("retries", "").strip():
            params["MaximumRetryAttempts"] = _whole(form["retries"], "MaximumRetryAttempts")
        if form.get("max_age", "").strip():
            params["MaximumEventAgeInSeconds"] = _whole(form["max_age"], "MaximumEventAgeInSeconds")
        destinations: dict[str, Any] = {}
        for field, key in (("on_success", "OnSuccess"), ("on_failure", "OnFailure")):
            if form.get(field, "").strip():
                destinations[key] = {"Destination": form[field].strip()}
        params["DestinationConfig"] = destinations
        await visit.call("lambda", "PutFunctionEventInvokeConfig", **params)
    except ApiError as error:
        return await show(visit, {"async": error})
    return visit.redirect(f"/functions/{name}/configuration", "Saved the asynchronous settings.")


def _whole(text: str, member: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ApiError(
            "ValidationException",
            f"1 validation error detected: Value '{text.strip()}' at "
            f"'{member[0].lower()}{member[1:]}' failed to satisfy constraint: "
            "Member must be a whole number",
            400,
        ) from None


def _variables(text: str) -> dict[str, str]:
    """`KEY=value` lines (blank lines and `#` comments skipped)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, separator, value = line.partition("=")
        if not separator:
            raise ApiError(
                "InvalidParameterValueException",
                f"Environment variables are KEY=value lines; this line has no '=': {line.strip()}",
                400,
            )
        found[key.strip()] = value
    return found
