"""Handlers: CreateFunction, Get/Update/Delete/ListFunctions, versions and account settings."""

from __future__ import annotations

from typing import Any

from lamina.api.context import ApiContext, Handler
from lamina.constants import (
    CODE_STORAGE_MAX_BYTES,
    UNZIPPED_CODE_MAX_BYTES,
    ZIPPED_CODE_MAX_BYTES,
)
from lamina.control.code import CodeSource
from lamina.control.concurrency import commitments, unreserved_concurrency
from lamina.errors import InvalidParameterValue, ValidationError
from lamina.model.functions import LoggingConfig

FUNCTION_NAME_MAX = 64


def settings_from(params: dict[str, Any]) -> dict[str, Any]:
    """Translate CreateFunction/UpdateFunctionConfiguration members into config fields."""
    settings: dict[str, Any] = {}
    simple = {
        "Role": "role",
        "Runtime": "runtime",
        "Handler": "handler",
        "Description": "description",
        "Timeout": "timeout",
        "MemorySize": "memory_size",
        "KMSKeyArn": "kms_key_arn",
        "PackageType": "package_type",
        "VpcConfig": "vpc_config",
    }
    for member, field in simple.items():
        if member in params:
            settings[field] = params[member]
    if "Environment" in params:
        settings["environment"] = dict(params["Environment"].get("Variables") or {})
    if "DeadLetterConfig" in params:
        settings["dead_letter_target"] = params["DeadLetterConfig"].get("TargetArn") or None
    if "TracingConfig" in params:
        settings["tracing_mode"] = params["TracingConfig"].get("Mode") or "PassThrough"
    if "Layers" in params:
        settings["layer_arns"] = list(params["Layers"])
    if "EphemeralStorage" in params:
        settings["ephemeral_storage"] = params["EphemeralStorage"]["Size"]
    if "Architectures" in params:
        settings["architectures"] = tuple(params["Architectures"])
    if "SnapStart" in params:
        settings["snap_start"] = params["SnapStart"].get("ApplyOn") or "None"
    if "LoggingConfig" in params:
        given = params["LoggingConfig"]
        settings["logging"] = LoggingConfig(
            log_format=given.get("LogFormat") or "Text",
            application_log_level=given.get("ApplicationLogLevel"),
            system_log_level=given.get("SystemLogLevel"),
            log_group=given.get("LogGroup"),
        )
    if "FileSystemConfigs" in params:
        settings["file_system_configs"] = tuple(params["FileSystemConfigs"])
    if "ImageConfig" in params:
        raise InvalidParameterValue(
            "ImageConfig applies to container images, which Lamina does not run."
        )
    return settings


def code_source(code: dict[str, Any]) -> CodeSource:
    return CodeSource(
        zip_file=code.get("ZipFile"),
        s3_bucket=code.get("S3Bucket"),
        s3_key=code.get("S3Key"),
        s3_object_version=code.get("S3ObjectVersion"),
        image_uri=code.get("ImageUri"),
    )


def operations(ctx: ApiContext) -> dict[str, Handler]:
    functions = ctx.functions
    views = ctx.views
    store = ctx.domain.stores.functions

    ref = ctx.function_ref

    def create_function(params: dict[str, Any]) -> dict[str, Any]:
        name_ref = ref(params)
        if len(name_ref.name) > FUNCTION_NAME_MAX:
            # The model allows 140 characters (an ARN); a function's own name has 64.
            raise ValidationError(
                f"1 validation error detected: Value '{params['FunctionName']}' at "
                "'functionName' failed to satisfy constraint: Member must have length less "
                f"than or equal to {FUNCTION_NAME_MAX}"
            )
        if name_ref.qualifier:
            raise InvalidParameterValue(
                "CreateFunction does not accept a qualified function name: "
                f"{params['FunctionName']}"
            )
        settings = settings_from(params)
        if settings.get("package_type") == "Image":
            raise InvalidParameterValue(
                "Lamina runs .zip deployment packages only: PackageType=Image is not supported."
            )
        config = functions.create(
            name_ref.name,
            settings,
            code_source(params.get("Code") or {}),
            publish=bool(params.get("Publish")),
            tags=params.get("Tags"),
            code_signing_config_arn=params.get("CodeSigningConfigArn"),
        )
        return views.function_configuration(config)

    def get_function(params: dict[str, Any]) -> dict[str, Any]:
        resolved = functions.resolve(ref(params), params.get("Qualifier"))
        result: dict[str, Any] = {
            "Configuration": views.function_configuration(resolved.config, resolved.qualifier),
            "Code": views.code_location(resolved.config),
        }
        if resolved.record.tags:
            result["Tags"] = dict(resolved.record.tags)
        if resolved.record.reserved_concurrency is not None:
            result["Concurrency"] = {
                "ReservedConcurrentExecutions": resolved.record.reserved_concurrency
            }
        return result

    def get_function_configuration(params: dict[str, Any]) -> dict[str, Any]:
        resolved = functions.resolve(ref(params), params.get("Qualifier"))
        return views.function_configuration(resolved.config, resolved.qualifier)

    def update_function_configuration(params: dict[str, Any]) -> dict[str, Any]:
        config = functions.update_configuration(
            ref(params), settings_from(params), params.get("RevisionId")
        )
        return views.function_configuration(config)

    def update_function_code(params: dict[str, Any]) -> dict[str, Any]:
        config = functions.update_code(
            ref(params),
            code_source(params),
            publish=bool(params.get("Publish")),
            dry_run=bool(params.get("DryRun")),
            revision_id=params.get("RevisionId"),
            architectures=params.get("Architectures"),
        )
        return views.function_configuration(config)

    def delete_function(params: dict[str, Any]) -> dict[str, Any]:
        functions.delete(ref(params), params.get("Qualifier"))
        return {"StatusCode": 204}

    def list_functions(params: dict[str, Any]) -> dict[str, Any]:
        version = params.get("FunctionVersion")
        if version is not None and version != "ALL":
            raise InvalidParameterValue(f"Invalid FunctionVersion: {version}. It must be ALL.")
        configs, marker = functions.list_functions(
            params.get("Marker"), params.get("MaxItems"), all_versions=version == "ALL"
        )
        return {
            "Functions": [views.function_configuration(config) for config in configs],
            "NextMarker": marker,
        }

    def publish_version(params: dict[str, Any]) -> dict[str, Any]:
        config = functions.publish_version(
            ref(params),
            params.get("CodeSha256"),
            params.get("Description"),
            params.get("RevisionId"),
        )
        return views.function_configuration(config)

    def list_versions_by_function(params: dict[str, Any]) -> dict[str, Any]:
        configs, marker = functions.list_versions(
            ref(params), params.get("Marker"), params.get("MaxItems")
        )
        return {
            "Versions": [views.function_configuration(config) for config in configs],
            "NextMarker": marker,
        }

    def get_account_settings(params: dict[str, Any]) -> dict[str, Any]:
        # What reservations and the provisioned concurrency of unreserved functions leave:
        # the pool the engine admits unreserved invocations from, and the one AWS's
        # "decreases account's UnreservedConcurrentExecution" refusals count provisioning in.
        committed = commitments(store).total
        code_size = store.total_code_size() + ctx.domain.stores.layers.total_code_size()
        limit = ctx.domain.account_concurrency
        return {
            "AccountLimit": {
                "TotalCodeSize": CODE_STORAGE_MAX_BYTES,
                "CodeSizeUnzipped": UNZIPPED_CODE_MAX_BYTES,
                "CodeSizeZipped": ZIPPED_CODE_MAX_BYTES,
                "ConcurrentExecutions": limit,
                "UnreservedConcurrentExecutions": unreserved_concurrency(limit, committed),
            },
            "AccountUsage": {"TotalCodeSize": code_size, "FunctionCount": store.count()},
        }

    return {
        "CreateFunction": create_function,
        "GetFunction": get_function,
        "GetFunctionConfiguration": get_function_configuration,
        "UpdateFunctionConfiguration": update_function_configuration,
        "UpdateFunctionCode": update_function_code,
        "DeleteFunction": delete_function,
        "ListFunctions": list_functions,
        "PublishVersion": publish_version,
        "ListVersionsByFunction": list_versions_by_function,
        "GetAccountSettings": get_account_settings,
    }
