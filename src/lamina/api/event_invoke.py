"""Handlers: Put/Update/Get/Delete/ListFunctionEventInvokeConfig(s)."""

from __future__ import annotations

from typing import Any

from lamina.api.context import ApiContext, Handler
from lamina.arns import Account
from lamina.control.event_invoke import (
    EventInvokeConfig,
    EventInvokeConfigService,
    EventInvokeSettings,
)


def _view(config: EventInvokeConfig, account: Account) -> dict[str, Any]:
    def destination(arn: str | None) -> dict[str, Any]:
        return {"Destination": arn} if arn else {}

    return {
        "LastModified": config.last_modified,
        "FunctionArn": account.function_arn(config.function_name, config.qualifier),
        "MaximumRetryAttempts": config.maximum_retry_attempts,
        "MaximumEventAgeInSeconds": config.maximum_event_age_seconds,
        "DestinationConfig": {
            "OnSuccess": destination(config.on_success),
            "OnFailure": destination(config.on_failure),
        },
    }


def operations(ctx: ApiContext) -> dict[str, Handler]:
    configs = EventInvokeConfigService(ctx.domain, ctx.functions, ctx.role_permissions)
    account = ctx.domain.account

    ref = ctx.function_ref

    def put_config(params: dict[str, Any]) -> dict[str, Any]:
        settings = EventInvokeSettings.from_request(params)
        return _view(configs.put(ref(params), params.get("Qualifier"), settings), account)

    def update_config(params: dict[str, Any]) -> dict[str, Any]:
        settings = EventInvokeSettings.from_request(params)
        return _view(configs.update(ref(params), params.get("Qualifier"), settings), account)

    def get_config(params: dict[str, Any]) -> dict[str, Any]:
        return _view(configs.get(ref(params), params.get("Qualifier")), account)

    def delete_config(params: dict[str, Any]) -> None:
        configs.delete(ref(params), params.get("Qualifier"))

    def list_configs(params: dict[str, Any]) -> dict[str, Any]:
        found, marker = configs.list_configs(
            ref(params), params.get("Marker"), params.get("MaxItems")
        )
        return {
            "FunctionEventInvokeConfigs": [_view(config, account) for config in found],
            "NextMarker": marker,
        }

    return {
        "PutFunctionEventInvokeConfig": put_config,
        "UpdateFunctionEventInvokeConfig": update_config,
        "GetFunctionEventInvokeConfig": get_config,
        "DeleteFunctionEventInvokeConfig": delete_config,
        "ListFunctionEventInvokeConfigs": list_configs,
    }
