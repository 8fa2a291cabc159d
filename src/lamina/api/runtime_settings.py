"""Handlers: Get/PutRuntimeManagementConfig and Get/PutFunctionRecursionConfig."""

from __future__ import annotations

from typing import Any

from lamina.api.context import ApiContext, Handler
from lamina.constants import LATEST
from lamina.control.runtime_settings import (
    RecursionService,
    RuntimeManagementConfig,
    RuntimeManagementService,
)


def operations(ctx: ApiContext) -> dict[str, Handler]:
    runtime = RuntimeManagementService(ctx.domain, ctx.functions)
    recursion = RecursionService(ctx.domain, ctx.functions)
    account = ctx.domain.account

    ref = ctx.function_ref

    def runtime_view(config: RuntimeManagementConfig) -> dict[str, Any]:
        qualifier = None if config.qualifier == LATEST else config.qualifier
        return {
            "UpdateRuntimeOn": config.update_runtime_on,
            "FunctionArn": account.function_arn(config.function_name, qualifier),
            "RuntimeVersionArn": config.runtime_version_arn,
        }

    def get_runtime_management(params: dict[str, Any]) -> dict[str, Any]:
        return runtime_view(runtime.get(ref(params), params.get("Qualifier")))

    def put_runtime_management(params: dict[str, Any]) -> dict[str, Any]:
        config = runtime.put(
            ref(params),
            params.get("Qualifier"),
            params["UpdateRuntimeOn"],
            params.get("RuntimeVersionArn"),
        )
        return runtime_view(config)

    def get_recursion(params: dict[str, Any]) -> dict[str, Any]:
        return {"RecursiveLoop": recursion.get(ref(params))}

    def put_recursion(params: dict[str, Any]) -> dict[str, Any]:
        return {"RecursiveLoop": recursion.put(ref(params), params["RecursiveLoop"])}

    return {
        "GetRuntimeManagementConfig": get_runtime_management,
        "PutRuntimeManagementConfig": put_runtime_management,
        "GetFunctionRecursionConfig": get_recursion,
        "PutFunctionRecursionConfig": put_recursion,
    }
