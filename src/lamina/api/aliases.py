"""Handlers: Create/Get/Update/Delete/ListAliases."""

from __future__ import annotations

from typing import Any

from lamina.api.context import ApiContext, Handler
from lamina.control.aliases import AliasService


def _weights(params: dict[str, Any]) -> dict[str, float] | None:
    routing = params.get("RoutingConfig")
    if routing is None:
        return None
    return dict(routing.get("AdditionalVersionWeights") or {})


def operations(ctx: ApiContext) -> dict[str, Handler]:
    aliases = AliasService(ctx.domain, ctx.functions)
    views = ctx.views

    ref = ctx.function_ref

    def create_alias(params: dict[str, Any]) -> dict[str, Any]:
        alias = aliases.create(
            ref(params),
            params["Name"],
            params["FunctionVersion"],
            params.get("Description"),
            _weights(params),
        )
        return views.alias(alias)

    def get_alias(params: dict[str, Any]) -> dict[str, Any]:
        return views.alias(aliases.get(ref(params), params["Name"]))

    def update_alias(params: dict[str, Any]) -> dict[str, Any]:
        alias = aliases.update(
            ref(params),
            params["Name"],
            params.get("FunctionVersion"),
            params.get("Description"),
            _weights(params),
            params.get("RevisionId"),
        )
        return views.alias(alias)

    def delete_alias(params: dict[str, Any]) -> None:
        aliases.delete(ref(params), params["Name"])

    def list_aliases(params: dict[str, Any]) -> dict[str, Any]:
        found, marker = aliases.list_aliases(
            ref(params), params.get("FunctionVersion"), params.get("Marker"), params.get("MaxItems")
        )
        return {"Aliases": [views.alias(alias) for alias in found], "NextMarker": marker}

    return {
        "CreateAlias": create_alias,
        "GetAlias": get_alias,
        "UpdateAlias": update_alias,
        "DeleteAlias": delete_alias,
        "ListAliases": list_aliases,
    }
