"""Handlers: code-signing configs and attaching them to functions."""

from __future__ import annotations

from typing import Any

from lamina.api.context import ApiContext, Handler
from lamina.control.code_signing import CodeSigningService
from lamina.model.functions import CodeSigningConfig


def render(config: CodeSigningConfig) -> dict[str, Any]:
    return {
        "CodeSigningConfigId": config.config_id,
        "CodeSigningConfigArn": config.arn,
        "Description": config.description,
        "AllowedPublishers": {
            "SigningProfileVersionArns": list(config.signing_profile_version_arns)
        },
        "CodeSigningPolicies": {
            "UntrustedArtifactOnDeployment": config.untrusted_artifact_on_deployment
        },
        "LastModified": config.last_modified,
    }


def _publishers(params: dict[str, Any]) -> list[str] | None:
    allowed = params.get("AllowedPublishers")
    return None if allowed is None else list(allowed["SigningProfileVersionArns"])


def _policy(params: dict[str, Any]) -> str | None:
    policies = params.get("CodeSigningPolicies") or {}
    value: str | None = policies.get("UntrustedArtifactOnDeployment")
    return value


def operations(ctx: ApiContext) -> dict[str, Handler]:
    signing = CodeSigningService(ctx.domain, ctx.functions)

    ref = ctx.function_ref

    def create_code_signing_config(params: dict[str, Any]) -> dict[str, Any]:
        config = signing.create(
            params.get("Description"),
            _publishers(params) or [],
            _policy(params),
            params.get("Tags"),
        )
        return {"CodeSigningConfig": render(config)}

    def get_code_signing_config(params: dict[str, Any]) -> dict[str, Any]:
        return {"CodeSigningConfig": render(signing.get(params["CodeSigningConfigArn"]))}

    def update_code_signing_config(params: dict[str, Any]) -> dict[str, Any]:
        config = signing.update(
            params["CodeSigningConfigArn"],
            params.get("Description"),
            _publishers(params),
            _policy(params),
        )
        return {"CodeSigningConfig": render(config)}

    def delete_code_signing_config(params: dict[str, Any]) -> None:
        signing.delete(params["CodeSigningConfigArn"])

    def list_code_signing_configs(params: dict[str, Any]) -> dict[str, Any]:
        configs, marker = signing.list_configs(params.get("Marker"), params.get("MaxItems"))
        return {"CodeSigningConfigs": [render(config) for config in configs], "NextMarker": marker}

    def list_functions_by_code_signing_config(params: dict[str, Any]) -> dict[str, Any]:
        arns, marker = signing.list_functions(
            params["CodeSigningConfigArn"], params.get("Marker"), params.get("MaxItems")
        )
        return {"FunctionArns": arns, "NextMarker": marker}

    def put_function_code_signing_config(params: dict[str, Any]) -> dict[str, Any]:
        record = signing.attach(ref(params), params["CodeSigningConfigArn"])
        return {"CodeSigningConfigArn": record.code_signing_config_arn, "FunctionName": record.name}

    def get_function_code_signing_config(params: dict[str, Any]) -> dict[str, Any]:
        record = signing.attached(ref(params))
        # Both members are required: a function without a config reports an empty ARN.
        return {
            "CodeSigningConfigArn": record.code_signing_config_arn or "",
            "FunctionName": record.name,
        }

    def delete_function_code_signing_config(params: dict[str, Any]) -> None:
        signing.detach(ref(params))

    return {
        "CreateCodeSigningConfig": create_code_signing_config,
        "GetCodeSigningConfig": get_code_signing_config,
        "UpdateCodeSigningConfig": update_code_signing_config,
        "DeleteCodeSigningConfig": delete_code_signing_config,
        "ListCodeSigningConfigs": list_code_signing_configs,
        "ListFunctionsByCodeSigningConfig": list_functions_by_code_signing_config,
        "PutFunctionCodeSigningConfig": put_function_code_signing_config,
        "GetFunctionCodeSigningConfig": get_function_code_signing_config,
        "DeleteFunctionCodeSigningConfig": delete_function_code_signing_config,
    }
