"""Handlers: layer versions (publish, get, list, delete) and their permissions."""

from __future__ import annotations

from typing import Any

import orjson

from lamina.api.context import ApiContext, Handler
from lamina.api.functions import code_source
from lamina.arns import layer_name_from
from lamina.control.layers import LayerService


def operations(ctx: ApiContext) -> dict[str, Handler]:
    layers = LayerService(ctx.domain)
    views = ctx.views
    account = ctx.domain.account

    def name(params: dict[str, Any]) -> str:
        return layer_name_from(params["LayerName"], account)

    def publish_layer_version(params: dict[str, Any]) -> dict[str, Any]:
        layer = layers.publish(
            name(params),
            code_source(params["Content"]),
            description=params.get("Description"),
            compatible_runtimes=params.get("CompatibleRuntimes"),
            compatible_architectures=params.get("CompatibleArchitectures"),
            license_info=params.get("LicenseInfo"),
        )
        return views.layer_version(layer)

    def get_layer_version(params: dict[str, Any]) -> dict[str, Any]:
        return views.layer_version(layers.get(name(params), params["VersionNumber"]))

    def get_layer_version_by_arn(params: dict[str, Any]) -> dict[str, Any]:
        return views.layer_version(layers.get_by_arn(params["Arn"]))

    def delete_layer_version(params: dict[str, Any]) -> None:
        layers.delete(name(params), params["VersionNumber"])

    def list_layers(params: dict[str, Any]) -> dict[str, Any]:
        found, marker = layers.list_layers(
            params.get("CompatibleRuntime"),
            params.get("CompatibleArchitecture"),
            params.get("Marker"),
            params.get("MaxItems"),
        )
        return {
            "Layers": [
                {
                    "LayerName": layer.name,
                    "LayerArn": account.layer_arn(layer.name),
                    "LatestMatchingVersion": views.layer_version(layer, with_content=False),
                }
                for layer in found
            ],
            "NextMarker": marker,
        }

    def list_layer_versions(params: dict[str, Any]) -> dict[str, Any]:
        found, marker = layers.list_versions(
            name(params),
            params.get("CompatibleRuntime"),
            params.get("CompatibleArchitecture"),
            params.get("Marker"),
            params.get("MaxItems"),
        )
        return {
            "LayerVersions": [views.layer_version(layer, with_content=False) for layer in found],
            "NextMarker": marker,
        }

    def add_layer_version_permission(params: dict[str, Any]) -> dict[str, Any]:
        statement, revision_id = layers.add_permission(
            name(params),
            params["VersionNumber"],
            params["StatementId"],
            params["Action"],
            params["Principal"],
            params.get("OrganizationId"),
            params.get("RevisionId"),
        )
        return {"Statement": orjson.dumps(statement).decode(), "RevisionId": revision_id}

    def get_layer_version_policy(params: dict[str, Any]) -> dict[str, Any]:
        policy, revision_id = layers.policy(name(params), params["VersionNumber"])
        return {"Policy": orjson.dumps(policy).decode(), "RevisionId": revision_id}

    def remove_layer_version_permission(params: dict[str, Any]) -> None:
        layers.remove_permission(
            name(params), params["VersionNumber"], params["StatementId"], params.get("RevisionId")
        )

    return {
        "PublishLayerVersion": publish_layer_version,
        "GetLayerVersion": get_layer_version,
        "GetLayerVersionByArn": get_layer_version_by_arn,
        "DeleteLayerVersion": delete_layer_version,
        "ListLayers": list_layers,
        "ListLayerVersions": list_layer_versions,
        "AddLayerVersionPermission": add_layer_version_permission,
        "GetLayerVersionPolicy": get_layer_version_policy,
        "RemoveLayerVersionPermission": remove_layer_version_permission,
    }
