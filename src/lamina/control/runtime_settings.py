"""Runtime management (when a function's runtime is updated) and recursive-loop detection."""

from __future__ import annotations

from dataclasses import dataclass, replace

from lamina.arns import FunctionRef
from lamina.constants import LATEST
from lamina.control.context import Domain
from lamina.control.functions import FunctionService, merge_qualifier
from lamina.errors import InvalidParameterValue
from lamina.model.functions import Document

KIND = "runtime-management"
MANUAL = "Manual"


@dataclass(frozen=True)
class RuntimeManagementConfig(Document):
    """How one version picks up runtime updates; Manual pins a runtime version ARN."""

    function_name: str
    qualifier: str  # "$LATEST" or a version number
    update_runtime_on: str = "Auto"
    runtime_version_arn: str | None = None


class RuntimeManagementService:
    def __init__(self, domain: Domain, functions: FunctionService) -> None:
        self._functions = functions
        self._store = domain.stores.functions

    def _target(self, ref: FunctionRef, qualifier: str | None) -> tuple[str, str]:
        """(function name, child key); the setting lives on $LATEST or a published version."""
        qualifier = merge_qualifier(ref, qualifier)
        if qualifier is not None and qualifier != LATEST and not qualifier.isdigit():
            raise InvalidParameterValue(
                f"Runtime management configuration applies to $LATEST or a published version, "
                f"not to alias {qualifier}: pass the version number the alias points to"
            )
        resolved = self._functions.resolve(ref, qualifier)
        return resolved.record.name, qualifier or LATEST

    def get(self, ref: FunctionRef, qualifier: str | None) -> RuntimeManagementConfig:
        name, key = self._target(ref, qualifier)
        doc = self._store.get_child(name, KIND, key)
        if doc is None:
            return RuntimeManagementConfig(function_name=name, qualifier=key)
        return RuntimeManagementConfig.from_doc(doc)

    def put(
        self,
        ref: FunctionRef,
        qualifier: str | None,
        update_runtime_on: str,
        runtime_version_arn: str | None,
    ) -> RuntimeManagementConfig:
        if update_runtime_on == MANUAL and not runtime_version_arn:
            raise InvalidParameterValue(
                "RuntimeVersionArn is required when UpdateRuntimeOn is Manual: give the ARN of "
                "the runtime version to pin the function to"
            )
        if update_runtime_on != MANUAL and runtime_version_arn:
            raise InvalidParameterValue(
                f"RuntimeVersionArn can only be set when UpdateRuntimeOn is Manual, not "
                f"{update_runtime_on}: remove it or set UpdateRuntimeOn to Manual"
            )
        with self._store.transaction():
            name, key = self._target(ref, qualifier)
            config = RuntimeManagementConfig(
                function_name=name,
                qualifier=key,
                update_runtime_on=update_runtime_on,
                runtime_version_arn=runtime_version_arn,
            )
            self._store.put_child(name, KIND, key, config.to_doc())
            return config


class RecursionService:
    """Whether Lambda stops a function caught in a recursive loop (Terminate) or not (Allow)."""

    def __init__(self, domain: Domain, functions: FunctionService) -> None:
        self._functions = functions
        self._store = domain.stores.functions

    def get(self, ref: FunctionRef) -> str:
        return self._functions.unqualified(ref, "GetFunctionRecursionConfig").recursive_loop

    def put(self, ref: FunctionRef, recursive_loop: str) -> str:
        with self._store.transaction():
            record = self._functions.unqualified(ref, "PutFunctionRecursionConfig")
            self._store.put(replace(record, recursive_loop=recursive_loop))
            return recursive_loop
