"""Code-signing configs: which signing profiles a function's code must come from."""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace

from lamina.arns import FunctionRef
from lamina.control.context import Domain
from lamina.control.functions import FunctionService
from lamina.control.paging import decode_marker, page_size, take_page
from lamina.control.tags import check_tags
from lamina.errors import CodeSigningConfigNotFound, ResourceConflict, ResourceNotFound
from lamina.model.functions import CodeSigningConfig, FunctionRecord, aws_timestamp

_ID_ALPHABET = string.ascii_lowercase + string.digits
_ID_LENGTH = 17


def new_config_id() -> str:
    return "csc-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))


class CodeSigningService:
    """Create, read, update, delete and attach code-signing configs."""

    def __init__(self, domain: Domain, functions: FunctionService) -> None:
        self._functions = functions
        self._function_store = domain.stores.functions
        self._store = domain.stores.code_signing
        self._account = domain.account

    # ------------------------------------------------------------------- configs

    def _find(self, arn: str) -> CodeSigningConfig | None:
        config_id = arn.rsplit(":", 1)[-1]
        if self._account.code_signing_config_arn(config_id) != arn:
            return None  # another account or region: Lamina serves only its own
        return self._store.get(config_id)

    def get(self, arn: str) -> CodeSigningConfig:
        config = self._find(arn)
        if config is None:
            missing = ResourceNotFound(
                f"The Lambda code signing configuration {arn} can not be found."
            )
            missing.error_type = None  # AWS sends this one without a Type
            raise missing
        return config

    def create(
        self,
        description: str | None,
        publisher_arns: Sequence[str],
        policy: str | None,
        tags: Mapping[str, str] | None = None,
    ) -> CodeSigningConfig:
        check_tags(tags or {}, "a code signing config")
        with self._store.transaction():
            config_id = new_config_id()
            while self._store.get(config_id) is not None:
                config_id = new_config_id()
            config = CodeSigningConfig(
                config_id=config_id,
                arn=self._account.code_signing_config_arn(config_id),
                description=description or "",
                signing_profile_version_arns=tuple(publisher_arns),
                untrusted_artifact_on_deployment=policy or "Warn",
                tags=dict(tags or {}),
            )
            self._store.put(config)
            return config

    def update(
        self,
        arn: str,
        description: str | None,
        publisher_arns: Sequence[str] | None,
        policy: str | None,
    ) -> CodeSigningConfig:
        with self._store.transaction():
            config = self.get(arn)
            updated = replace(
                config,
                description=config.description if description is None else description,
                signing_profile_version_arns=(
                    config.signing_profile_version_arns
                    if publisher_arns is None
                    else tuple(publisher_arns)
                ),
                untrusted_artifact_on_deployment=policy or config.untrusted_artifact_on_deployment,
                last_modified=aws_timestamp(),
            )
            self._store.put(updated)
            return updated

    def delete(self, arn: str) -> None:
        with self._store.transaction():
            config = self.get(arn)
            user = next(self._users(config.arn), None)
            if user is not None:
                raise ResourceConflict(
                    f"The code signing configuration {arn} cannot be deleted because function "
                    f"{user.name} uses it. Detach it with DeleteFunctionCodeSigningConfig first."
                )
            self._store.delete(config.config_id)

    def list_configs(
        self, marker: str | None, max_items: int | None
    ) -> tuple[list[CodeSigningConfig], str | None]:
        after = decode_marker(marker)
        configs = [
            config for config in self._store.all() if after is None or config.config_id > after
        ]
        return take_page(configs, page_size(max_items), lambda config: config.config_id)

    def list_functions(
        self, arn: str, marker: str | None, max_items: int | None
    ) -> tuple[list[str], str | None]:
        config = self.get(arn)
        users = (record.name for record in self._users(config.arn, after=decode_marker(marker)))
        names, next_marker = take_page(users, page_size(max_items), lambda name: name)
        return [self._account.function_arn(name) for name in names], next_marker

    def _users(self, arn: str, after: str | None = None) -> Iterator[FunctionRecord]:
        """Functions the config is attached to, by name."""
        while True:
            batch = self._function_store.page(after, 100)
            if not batch:
                return
            for record in batch:
                if record.code_signing_config_arn == arn:
                    yield record
            after = batch[-1].name

    # ---------------------------------------------------------------- functions

    def attach(self, ref: FunctionRef, arn: str) -> FunctionRecord:
        with self._function_store.transaction():
            # The config is checked first: AWS names it when both are missing.
            config = self._find(arn)
            if config is None:
                raise CodeSigningConfigNotFound(
                    "The code signing configuration cannot be found. Check that the provided "
                    f"configuration is not deleted: {arn}."
                )
            record = self._functions.unqualified(ref, "PutFunctionCodeSigningConfig")
            updated = replace(record, code_signing_config_arn=config.arn)
            self._function_store.put(updated)
            return updated

    def attached(self, ref: FunctionRef) -> FunctionRecord:
        return self._functions.unqualified(ref, "GetFunctionCodeSigningConfig")

    def detach(self, ref: FunctionRef) -> None:
        with self._function_store.transaction():
            record = self._functions.unqualified(ref, "DeleteFunctionCodeSigningConfig")
            if record.code_signing_config_arn is not None:
                self._function_store.put(replace(record, code_signing_config_arn=None))
