"""Lambda's use of a function's `KMSKeyArn` at each cold start.

On AWS, Lambda decrypts a function's environment variables with its KMS key when it starts an
execution environment, acting as the function's execution role. A disabled key, or a role the
key (its key policy, and the role's policies where the key policy delegates to IAM) does not
let decrypt, fails the invocation with a 502 naming KMS's refusal. Lamina seals variables
under its own master key, so nothing is decrypted with the function's key; it applies the
same decision so that a function behaves as it will on AWS.
"""

from __future__ import annotations

from lamina.control.role_permissions import RolePermissions
from lamina.errors import KmsAccessDenied, KmsDisabled
from lamina.identity.policy import denial_message
from lamina.model.functions import FunctionConfig
from lamina.store.environment_sealing import key_id_of
from lamina.store.protocols.kms import KmsKeyStore

_PREFIX = "Lambda was unable to decrypt the environment variables because "
_SUFFIX = "Please check the function's KMS key settings."
_DECRYPT = "kms:Decrypt"


class EnvironmentKeys:
    """Refuses a cold start whose function's key Lambda could not decrypt with."""

    def __init__(self, keys: KmsKeyStore, roles: RolePermissions | None = None) -> None:
        """`roles`: enforced mode's view of what execution roles allow (None: development
        mode, where only the key's state counts)."""
        self._keys = keys
        self._roles = roles

    def check(self, config: FunctionConfig) -> None:
        if not config.kms_key_arn or not config.environment:
            return  # nothing to decrypt, so the key is not used
        key_id = key_id_of(config.kms_key_arn)
        key = self._keys.get_key(key_id) if key_id is not None else None
        if key is None or key.arn != config.kms_key_arn:
            return  # CreateFunction and UpdateFunctionConfiguration refuse unknown keys
        if not key.enabled:
            raise KmsDisabled(
                f"{_PREFIX}the KMS key used is disabled. {_SUFFIX} KMS Exception: "
                f"DisabledExceptionKMS Message: {key.arn} is disabled."
            )
        if self._roles is None or not config.role:
            return
        session = self._roles.session(config.role, config.function_name)
        decision = self._roles.key_decision(session, _DECRYPT, key.arn, key.policy)
        if not decision:
            refusal = denial_message(session.arn, _DECRYPT, key.arn, decision)
            raise KmsAccessDenied(
                f"{_PREFIX}KMS access was denied. {_SUFFIX} KMS Exception: "
                f"AccessDeniedExceptionKMS Message: {refusal}"
            )
