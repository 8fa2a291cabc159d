"""Domain records rendered as the model's output shapes."""

from __future__ import annotations

from typing import Any

from lamina.api.code_links import CodeLinks
from lamina.arns import Account
from lamina.control.states import snap_started
from lamina.control.vpc import vpc_config_view
from lamina.model.functions import Alias, FunctionConfig, LayerVersion


class Views:
    def __init__(self, account: Account, links: CodeLinks, snapstart: bool = False) -> None:
        """`snapstart`: whether this server snapshots SnapStart versions (LAMINA_SNAPSTART);
        without it their OptimizationStatus is Off, as they run without a snapshot."""
        self.account = account
        self.links = links
        self.snapstart = snapstart

    def function_configuration(
        self, config: FunctionConfig, qualifier: str | None = None
    ) -> dict[str, Any]:
        """FunctionConfiguration; `qualifier` is how the caller addressed it (e.g. an alias)."""
        shown_qualifier = qualifier if qualifier else None
        if shown_qualifier is None and config.version != "$LATEST":
            shown_qualifier = config.version
        logging = config.logging
        view: dict[str, Any] = {
            "FunctionName": config.function_name,
            "FunctionArn": self.account.function_arn(config.function_name, shown_qualifier),
            "Runtime": config.runtime,
            "Role": config.role,
            "Handler": config.handler,
            "CodeSize": config.code_size,
            "Description": config.description,
            "Timeout": config.timeout,
            "MemorySize": config.memory_size,
            "LastModified": config.last_modified,
            "CodeSha256": config.code_sha256,
            "Version": config.version,
            "TracingConfig": {"Mode": config.tracing_mode},
            "RevisionId": config.revision_id,
            "State": config.state,
            "PackageType": config.package_type,
            "Architectures": list(config.architectures),
            "EphemeralStorage": {"Size": config.ephemeral_storage},
            "SnapStart": {
                "ApplyOn": config.snap_start,
                "OptimizationStatus": "On" if self.snapstart and snap_started(config) else "Off",
            },
            "LoggingConfig": {
                "LogFormat": logging.log_format,
                "ApplicationLogLevel": logging.application_log_level,
                "SystemLogLevel": logging.system_log_level,
                "LogGroup": logging.log_group or f"/aws/lambda/{config.function_name}",
            },
        }
        # The state machine's fields, each only when it has a value (as AWS leaves them out).
        for member, value in (
            ("StateReason", config.state_reason),
            ("StateReasonCode", config.state_reason_code),
            ("LastUpdateStatus", config.last_update_status),
            ("LastUpdateStatusReason", config.last_update_status_reason),
            ("LastUpdateStatusReasonCode", config.last_update_status_reason_code),
        ):
            if value is not None:
                view[member] = value
        if config.environment is not None:
            view["Environment"] = {"Variables": dict(config.environment)}
        if config.dead_letter_target:
            view["DeadLetterConfig"] = {"TargetArn": config.dead_letter_target}
        if config.kms_key_arn:
            view["KMSKeyArn"] = config.kms_key_arn
        if config.layers:
            view["Layers"] = [
                {"Arn": layer.arn, "CodeSize": layer.code_size} for layer in config.layers
            ]
        if config.vpc_config is not None:
            view["VpcConfig"] = vpc_config_view(config.vpc_config)
        if config.file_system_configs:
            view["FileSystemConfigs"] = list(config.file_system_configs)
        if config.runtime:
            view["RuntimeVersionConfig"] = {
                "RuntimeVersionArn": f"arn:aws:lambda:{self.account.region}::runtime:lamina-"
                f"{config.runtime}"
            }
        return view

    def code_location(self, config: FunctionConfig) -> dict[str, Any]:
        return {"RepositoryType": "S3", "Location": self.links.url_for(config.code_blob)}

    def alias(self, alias: Alias) -> dict[str, Any]:
        view: dict[str, Any] = {
            "AliasArn": self.account.function_arn(alias.function_name, alias.name),
            "Name": alias.name,
            "FunctionVersion": alias.function_version,
            "Description": alias.description,
            "RevisionId": alias.revision_id,
        }
        if alias.additional_weights:
            view["RoutingConfig"] = {"AdditionalVersionWeights": dict(alias.additional_weights)}
        return view

    def layer_version(self, layer: LayerVersion, with_content: bool = True) -> dict[str, Any]:
        view: dict[str, Any] = {
            "LayerVersionArn": self.account.layer_arn(layer.name, layer.version),
            "Version": layer.version,
            "Description": layer.description,
            "CreatedDate": layer.created_date,
            "CompatibleRuntimes": list(layer.compatible_runtimes) or None,
            "LicenseInfo": layer.license_info,
            "CompatibleArchitectures": list(layer.compatible_architectures) or None,
        }
        if with_content:
            view["LayerArn"] = self.account.layer_arn(layer.name)
            view["Content"] = {
                "Location": self.links.url_for(layer.code_blob),
                "CodeSha256": layer.code_sha256,
                "CodeSize": layer.code_size,
            }
        return view
