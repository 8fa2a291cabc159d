"""Handlers: reserved concurrency and provisioned concurrency configs."""

from __future__ import annotations

from typing import Any

from lamina.api.context import ApiContext, Handler
from lamina.control.concurrency import ConcurrencyService, ProvisionedConcurrency


def provisioned_view(config: ProvisionedConcurrency) -> dict[str, Any]:
    view: dict[str, Any] = {
        "RequestedProvisionedConcurrentExecutions": config.requested,
        "AvailableProvisionedConcurrentExecutions": config.available,
        "AllocatedProvisionedConcurrentExecutions": config.allocated,
        "Status": config.status,
        "LastModified": config.last_modified,
    }
    if config.status_reason:
        view["StatusReason"] = config.status_reason
    return view


def operations(ctx: ApiContext) -> dict[str, Handler]:
    concurrency = ConcurrencyService(ctx.domain, ctx.functions)
    account = ctx.domain.account

    ref = ctx.function_ref

    def put_function_concurrency(params: dict[str, Any]) -> dict[str, Any]:
        reserved = concurrency.put_reserved(ref(params), params["ReservedConcurrentExecutions"])
        return {"ReservedConcurrentExecutions": reserved}

    def get_function_concurrency(params: dict[str, Any]) -> dict[str, Any]:
        reserved = concurrency.get_reserved(ref(params))
        return {} if reserved is None else {"ReservedConcurrentExecutions": reserved}

    def delete_function_concurrency(params: dict[str, Any]) -> None:
        concurrency.delete_reserved(ref(params))

    def put_provisioned(params: dict[str, Any]) -> dict[str, Any]:
        config = concurrency.put_provisioned(
            ref(params), params.get("Qualifier"), params["ProvisionedConcurrentExecutions"]
        )
        return provisioned_view(config)

    def get_provisioned(params: dict[str, Any]) -> dict[str, Any]:
        return provisioned_view(concurrency.get_provisioned(ref(params), params.get("Qualifier")))

    def delete_provisioned(params: dict[str, Any]) -> None:
        concurrency.delete_provisioned(ref(params), params.get("Qualifier"))

    def list_provisioned(params: dict[str, Any]) -> dict[str, Any]:
        name, configs, marker = concurrency.list_provisioned(
            ref(params), params.get("Marker"), params.get("MaxItems")
        )
        return {
            "ProvisionedConcurrencyConfigs": [
                {"FunctionArn": account.function_arn(name, qualifier), **provisioned_view(config)}
                for qualifier, config in configs
            ],
            "NextMarker": marker,
        }

    return {
        "PutFunctionConcurrency": put_function_concurrency,
        "GetFunctionConcurrency": get_function_concurrency,
        "DeleteFunctionConcurrency": delete_function_concurrency,
        "PutProvisionedConcurrencyConfig": put_provisioned,
        "GetProvisionedConcurrencyConfig": get_provisioned,
        "DeleteProvisionedConcurrencyConfig": delete_provisioned,
        "ListProvisionedConcurrencyConfigs": list_provisioned,
    }
