"""The Versions and aliases tab: publish a version; create and edit aliases, with weighted
routing to a second version."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from lamina.console.api_calls import ApiError
from lamina.console.pages.function import function_name, get_function, render_tab
from lamina.console.web import Visit


async def show(visit: Visit, error: ApiError | None = None) -> Response:
    name = function_name(visit)
    function = await get_function(visit, name)
    versions = await _all(visit, "ListVersionsByFunction", "Versions", name)
    aliases = await _all(visit, "ListAliases", "Aliases", name)
    return render_tab(
        visit,
        "versions",
        function,
        status=400 if error else 200,
        versions=versions,
        aliases=aliases,
        error=error,
        values=visit.form,
    )


async def _all(visit: Visit, operation: str, member: str, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    marker: str | None = None
    while True:
        params: dict[str, Any] = {"FunctionName": name, "MaxItems": 50}
        if marker:
            params["Marker"] = marker
        page = await visit.call("lambda", operation, **params)
        found.extend(page.get(member, []))
        marker = page.get("NextMarker")
        if not marker:
            return found


async def publish(visit: Visit) -> Response:
    name = function_name(visit)
    try:
        version = await visit.call(
            "lambda",
            "PublishVersion",
            FunctionName=name,
            Description=visit.form.get("description", ""),
        )
    except ApiError as error:
        return await show(visit, error)
    return visit.redirect(f"/functions/{name}/versions", f"Published version {version['Version']}.")


async def save_alias(visit: Visit) -> Response:
    """Create the alias, or update it when it exists (the form says which)."""
    name = function_name(visit)
    form = visit.form
    alias = form.get("alias", "").strip()
    params: dict[str, Any] = {
        "FunctionName": name,
        "Name": alias,
        "FunctionVersion": form.get("version", "").strip(),
        "Description": form.get("description", ""),
    }
    try:
        extra = form.get("extra_version", "").strip()
        weight = form.get("extra_weight", "").strip()
        if extra and weight:
            try:
                share = float(weight) / 100 if float(weight) > 1 else float(weight)
            except ValueError:
                raise ApiError(
                    "InvalidParameterValueException",
                    f"The routing weight must be a number (a percentage): {weight}",
                    400,
                ) from None
            params["RoutingConfig"] = {"AdditionalVersionWeights": {extra: share}}
        elif form.get("existing"):
            params["RoutingConfig"] = {"AdditionalVersionWeights": {}}
        operation = "UpdateAlias" if form.get("existing") else "CreateAlias"
        await visit.call("lambda", operation, **params)
    except ApiError as error:
        return await show(visit, error)
    verb = "Updated" if form.get("existing") else "Created"
    return visit.redirect(f"/functions/{name}/versions", f"{verb} the alias {alias}.")
