"""A function's deployment package: reading and storing its code, the layers it names, and
the checks AWS makes on both (storage and unzipped-size limits, code signing)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from lamina.arns import access_denied, parse_layer_arn
from lamina.constants import CODE_STORAGE_MAX_BYTES, MAX_LAYERS, UNZIPPED_CODE_MAX_BYTES
from lamina.control.code import CodeArchive, CodeSource, inspect_archive
from lamina.control.context import Domain
from lamina.errors import (
    CodeSigningConfigNotFound,
    CodeStorageExceeded,
    CodeVerificationFailed,
    InvalidParameterValue,
)
from lamina.model.functions import FunctionConfig, LayerRef


class Packages:
    """Code and layers for function configurations, over the domain's stores."""

    def __init__(self, domain: Domain) -> None:
        self._domain = domain

    def load(self, code: CodeSource) -> CodeArchive:
        return inspect_archive(code.read(self._domain.s3))

    def with_code(self, config: FunctionConfig, archive: CodeArchive) -> FunctionConfig:
        config = replace(
            config,
            code_sha256=archive.sha256,
            code_size=archive.size,
            code_blob=self._store(archive),
            unzipped_size=archive.unzipped_size,
        )
        self.check_unzipped(config)
        return config

    def _store(self, archive: CodeArchive) -> str:
        stores = self._domain.stores
        if not stores.blobs.exists(archive.blob_key):
            used = stores.functions.total_code_size() + stores.layers.total_code_size()
            if used + archive.size > CODE_STORAGE_MAX_BYTES:
                raise CodeStorageExceeded("Code storage limit exceeded.")
        return stores.blobs.put(archive.data, archive.blob_key)

    def resolve_layers(self, arns: Sequence[str]) -> tuple[LayerRef, ...]:
        if len(arns) > MAX_LAYERS:
            raise InvalidParameterValue(f"Cannot reference more than {MAX_LAYERS} layers.")
        refs: list[LayerRef] = []
        # The first version named of each layer, for AWS's refusal of a second one.
        seen: dict[str, str] = {}
        for arn in arns:
            parsed = parse_layer_arn(arn)
            if parsed is None or parsed.version is None:
                raise InvalidParameterValue(f"Layer version {arn} does not exist.")
            if parsed.account_id != self._domain.account.account_id:
                # Another account's layer: Lamina cannot see it, and nothing grants it.
                raise access_denied(self._domain.account, "GetLayerVersion", arn)
            if parsed.region != self._domain.account.region:
                raise InvalidParameterValue(
                    "Layers are not in the same region as the function. Layers are expected "
                    f"to be in region {self._domain.account.region}."
                )
            layer = self._domain.stores.layers.get_version(parsed.name, parsed.version)
            if layer is None:
                raise InvalidParameterValue(f"Layer version {arn} does not exist.")
            if parsed.name in seen:
                raise InvalidParameterValue(
                    "Two different versions of the same layer are not allowed to be referenced "
                    f"in the same function. {seen[parsed.name]} and {arn} are versions of the "
                    "same layer."
                )
            seen[parsed.name] = arn
            refs.append(
                LayerRef(
                    arn=arn,
                    code_size=layer.code_size,
                    unzipped_size=layer.unzipped_size,
                    code_sha256=layer.code_sha256,
                )
            )
        return tuple(refs)

    @staticmethod
    def check_unzipped(config: FunctionConfig) -> None:
        total = config.unzipped_size + sum(layer.unzipped_size for layer in config.layers)
        if total > UNZIPPED_CODE_MAX_BYTES:
            raise InvalidParameterValue(
                "Function code combined with layers exceeds the maximum allowed size of "
                f"{UNZIPPED_CODE_MAX_BYTES} bytes. The actual size is {total} bytes."
            )

    def check_signing(self, config_arn: str) -> None:
        config_id = config_arn.rsplit(":", 1)[-1]
        ours = self._domain.account.code_signing_config_arn(config_id) == config_arn
        config = self._domain.stores.code_signing.get(config_id) if ours else None
        if config is None:
            raise CodeSigningConfigNotFound(
                "The code signing configuration cannot be found. Check that the provided "
                f"configuration is not deleted: {config_arn}."
            )
        # Lamina has no signing service, so no archive it receives carries a trusted
        # signature: under Enforce every deployment is untrusted and refused, as on AWS.
        if config.untrusted_artifact_on_deployment == "Enforce":
            raise CodeVerificationFailed(
                "Lambda cannot deploy the function. The function or layer might be signed using "
                "a signature that the client is not configured to accept. Check the provided "
                f"signature for {config_arn}."
            )
