"""The functions list (search, figures of the last hour) and creating a function from a
blueprint or an uploaded zip."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from starlette.datastructures import UploadFile
from starlette.responses import Response

from lamina import blueprints
from lamina.console.api_calls import ApiError
from lamina.console.authorization import READ_METRICS
from lamina.console.pages.triggers import allow_public
from lamina.console.web import Visit

_PAGE = 50
DEFAULT_ROLE_NAME = "lamina-console"


async def list_functions(
    visit: Visit, error: ApiError | None = None, values: dict[str, str] | None = None
) -> Response:
    functions = await all_functions(visit)
    query = visit.request.query_params.get("q", "").strip().lower()
    if query:
        functions = [f for f in functions if query in f["FunctionName"].lower()]
    figures: dict[str, Any] = {}
    figures_error: str | None = None
    try:
        visit.check(READ_METRICS)
        names = [function["FunctionName"] for function in functions]
        figures = await anyio.to_thread.run_sync(_last_hour, visit, names)
    except ApiError as refusal:
        figures_error = refusal.message  # the list still shows; only the figures are hidden
    rows = [
        {"function": function, "figures": figures.get(function["FunctionName"])}
        for function in sorted(functions, key=lambda f: f["FunctionName"])
    ]
    return visit.render(
        "functions.html",
        rows=rows,
        query=query,
        figures_error=figures_error,
        catalog=blueprints.catalog(),
        roles=await _roles(visit),
        default_role=f"arn:aws:iam::{visit.console.account_id}:role/{DEFAULT_ROLE_NAME}",
        status=400 if error else 200,
        error=error,
        values=values or {},
    )


def _last_hour(visit: Visit, names: list[str]) -> dict[str, Any]:
    """The listed functions' figures (read by index, not every function's rows), with what
    this node observed until now saved first (as `/_lamina/usage` does): a person who just
    ran a test expects to see it counted."""
    deps = visit.console.deps
    deps.telemetry.flush()
    return deps.figures.last_hour(names)


async def all_functions(visit: Visit) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    marker: str | None = None
    while True:
        params: dict[str, Any] = {"MaxItems": _PAGE}
        if marker:
            params["Marker"] = marker
        page = await visit.call("lambda", "ListFunctions", **params)
        found.extend(page.get("Functions", []))
        marker = page.get("NextMarker")
        if not marker:
            return found


async def _roles(visit: Visit) -> list[str]:
    """Roles to offer in the create form; none when the caller may not list them."""
    try:
        page = await visit.call("iam", "ListRoles", MaxItems=100)
    except ApiError:
        return []
    return [role["Arn"] for role in page.get("Roles", [])]


async def create(visit: Visit) -> Response:
    form = visit.form
    name = form.get("name", "").strip()
    role = form.get("role", "").strip()
    source = form.get("source", "blueprint")
    try:
        if source == "zip":
            params = await _from_zip(visit, name, role)
            blueprint = None
        else:
            blueprint = blueprints.get(form.get("blueprint", ""))
            params = {
                "FunctionName": name,
                "Runtime": blueprint.runtime,
                "Handler": blueprint.handler,
                "Role": role,
                "Timeout": blueprint.timeout,
                "MemorySize": blueprint.memory_size,
                "Code": {"ZipFile": blueprint.zip_bytes()},
                "Description": blueprint.description[:256],
            }
        created = await visit.call("lambda", "CreateFunction", **params)
    except ApiError as error:
        return await _form_error(visit, error)
    except blueprints.UnknownBlueprint as error:
        return await _form_error(visit, ApiError("ResourceNotFoundException", str(error), 404))
    message = f"Created {created['FunctionName']}."
    if blueprint is not None and blueprint.trigger is not None and form.get("add_trigger"):
        message += " " + await _add_trigger(visit, created, blueprint.trigger)
    return visit.redirect(f"/functions/{created['FunctionName']}", message)


async def _from_zip(visit: Visit, name: str, role: str) -> dict[str, Any]:
    form = await visit.request.form()
    upload = form.get("zip")
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise ApiError("InvalidParameterValueException", "Choose a .zip file to upload.", 400)
    return {
        "FunctionName": name,
        "Runtime": visit.form.get("runtime", ""),
        "Handler": visit.form.get("handler", ""),
        "Role": role,
        "Code": {"ZipFile": await upload.read()},
    }


async def _add_trigger(visit: Visit, function: dict[str, Any], trigger: Any) -> str:
    """The blueprint's suggested trigger, where it needs nothing more from the person."""
    name = function["FunctionName"]
    try:
        if trigger.kind == "url":
            url = await visit.call(
                "lambda", "CreateFunctionUrlConfig", FunctionName=name, **trigger.settings
            )
            if trigger.settings.get("AuthType") == "NONE":
                await allow_public(visit, name)
            return f"Function URL: {url['FunctionUrl']}"
        if trigger.kind == "schedule":
            rule = await visit.call(
                "events", "PutRule", Name=f"{name}-schedule", State="ENABLED", **trigger.settings
            )
            await visit.call(
                "lambda",
                "AddPermission",
                FunctionName=name,
                StatementId=f"{name}-schedule",
                Action="lambda:InvokeFunction",
                Principal="events.amazonaws.com",
                SourceArn=rule["RuleArn"],
            )
            await visit.call(
                "events",
                "PutTargets",
                Rule=f"{name}-schedule",
                Targets=[{"Id": "function", "Arn": function["FunctionArn"]}],
            )
            return f"Schedule rule {name}-schedule added."
    except ApiError as error:
        return f"The trigger was not added: {error.code}: {error.message}"
    return f"Add its trigger on the Triggers tab: {trigger.description}"


async def _form_error(visit: Visit, error: ApiError) -> Response:
    return await list_functions(visit, error, visit.form)
