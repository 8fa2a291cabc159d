"""The Triggers tab: the function URL (address, auth type, CORS), event source mappings
(state, last result; enable or disable) and EventBridge rules and schedules that target it."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from lamina.console.api_calls import ApiError
from lamina.console.pages.function import function_name, get_function, render_tab
from lamina.console.web import Visit


async def show(visit: Visit, error: ApiError | None = None) -> Response:
    name = function_name(visit)
    function = await get_function(visit, name)
    url = await _optional(visit, "lambda", "GetFunctionUrlConfig", FunctionName=name)
    mappings = await visit.call("lambda", "ListEventSourceMappings", FunctionName=name)
    rules = await _rules(visit, function["Configuration"]["FunctionArn"])
    return render_tab(
        visit,
        "triggers",
        function,
        status=400 if error else 200,
        url=url,
        mappings=mappings.get("EventSourceMappings", []),
        pollers=visit.console.deps.poller_statuses(),
        rules=rules,
        error=error,
    )


async def _optional(visit: Visit, service: str, operation: str, **params: Any) -> Any:
    try:
        return await visit.call(service, operation, **params)
    except ApiError as error:
        if error.code == "ResourceNotFoundException":
            return None
        raise


async def _rules(visit: Visit, function_arn: str) -> list[dict[str, Any]]:
    """Rules of the default bus whose targets include the function (or its qualifiers)."""
    try:
        names = await visit.call("events", "ListRuleNamesByTarget", TargetArn=function_arn)
    except ApiError:
        return []  # a caller without events:ListRuleNamesByTarget sees the other triggers
    rules = []
    for rule_name in names.get("RuleNames", []):
        described = await _optional(visit, "events", "DescribeRule", Name=rule_name)
        if described is not None:
            rules.append(described)
    return rules


async def create_url(visit: Visit) -> Response:
    name = function_name(visit)
    form = visit.form
    params: dict[str, Any] = {"FunctionName": name, "AuthType": form.get("auth_type", "AWS_IAM")}
    origins = [o.strip() for o in form.get("cors_origins", "").split(",") if o.strip()]
    if origins:
        params["Cors"] = {"AllowOrigins": origins}
    exists = form.get("existing") == "1"
    try:
        await visit.call(
            "lambda", "UpdateFunctionUrlConfig" if exists else "CreateFunctionUrlConfig", **params
        )
        if params["AuthType"] == "NONE" and not exists:
            await allow_public(visit, name)
    except ApiError as error:
        return await show(visit, error)
    return visit.redirect(f"/functions/{name}/triggers", "Saved the function URL.")


async def allow_public(visit: Visit, name: str) -> None:
    """AuthType NONE answers the public only with this statement, as AWS's console adds it."""
    try:
        await visit.call(
            "lambda",
            "AddPermission",
            FunctionName=name,
            StatementId="FunctionURLAllowPublicAccess",
            Action="lambda:InvokeFunctionUrl",
            Principal="*",
            FunctionUrlAuthType="NONE",
        )
    except ApiError as error:
        if error.code != "ResourceConflictException":  # already there
            raise


async def toggle_mapping(visit: Visit) -> Response:
    name = function_name(visit)
    uuid = str(visit.request.path_params["uuid"])
    enabled = visit.form.get("enabled") == "true"
    try:
        await visit.call("lambda", "UpdateEventSourceMapping", UUID=uuid, Enabled=enabled)
    except ApiError as error:
        return await show(visit, error)
    verb = "Enabling" if enabled else "Disabling"
    return visit.redirect(f"/functions/{name}/triggers", f"{verb} the mapping {uuid}.")
