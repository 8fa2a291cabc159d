"""Handlers: Create/Get/Update/Delete/ListFunctionUrlConfig(s)."""

from __future__ import annotations

from typing import Any

from lamina.api.context import ApiContext, Handler
from lamina.control.urls import Cors, FunctionUrlConfig, UrlConfigService, UrlSettings

_CORS_FIELDS = {
    "AllowCredentials": "allow_credentials",
    "AllowHeaders": "allow_headers",
    "AllowMethods": "allow_methods",
    "AllowOrigins": "allow_origins",
    "ExposeHeaders": "expose_headers",
    "MaxAge": "max_age",
}


def _cors_from(given: dict[str, Any] | None) -> Cors | None:
    if given is None:
        return None
    values: dict[str, Any] = {}
    for member, name in _CORS_FIELDS.items():
        value = given.get(member)
        values[name] = tuple(value) if isinstance(value, list) else value
    return Cors(**values)


def _cors_view(cors: Cors | None) -> dict[str, Any] | None:
    if cors is None:
        return None
    view: dict[str, Any] = {}
    for member, name in _CORS_FIELDS.items():
        value = getattr(cors, name)
        if value is not None:
            view[member] = list(value) if isinstance(value, tuple) else value
    return view


def _settings_from(params: dict[str, Any]) -> UrlSettings:
    return UrlSettings(
        auth_type=params.get("AuthType"),
        cors=_cors_from(params.get("Cors")),
        invoke_mode=params.get("InvokeMode"),
    )


def operations(ctx: ApiContext) -> dict[str, Handler]:
    urls = UrlConfigService(ctx.domain, ctx.functions)

    ref = ctx.function_ref

    def view(config: FunctionUrlConfig) -> dict[str, Any]:
        return {
            "FunctionUrl": ctx.url_form.url(config.url_id),
            "FunctionArn": urls.function_arn(config),
            "AuthType": config.auth_type,
            "Cors": _cors_view(config.cors),
            "CreationTime": config.creation_time,
            "LastModifiedTime": config.last_modified_time,
            "InvokeMode": config.invoke_mode,
        }

    def create_url(params: dict[str, Any]) -> dict[str, Any]:
        config = urls.create(ref(params), params.get("Qualifier"), _settings_from(params))
        return view(config)

    def get_url(params: dict[str, Any]) -> dict[str, Any]:
        return view(urls.get(ref(params), params.get("Qualifier")))

    def update_url(params: dict[str, Any]) -> dict[str, Any]:
        config = urls.update(ref(params), params.get("Qualifier"), _settings_from(params))
        return view(config)

    def delete_url(params: dict[str, Any]) -> None:
        urls.delete(ref(params), params.get("Qualifier"))

    def list_urls(params: dict[str, Any]) -> dict[str, Any]:
        found, marker = urls.list_configs(ref(params), params.get("Marker"), params.get("MaxItems"))
        return {"FunctionUrlConfigs": [view(config) for config in found], "NextMarker": marker}

    return {
        "CreateFunctionUrlConfig": create_url,
        "GetFunctionUrlConfig": get_url,
        "UpdateFunctionUrlConfig": update_url,
        "DeleteFunctionUrlConfig": delete_url,
        "ListFunctionUrlConfigs": list_urls,
    }
