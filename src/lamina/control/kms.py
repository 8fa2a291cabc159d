"""KMS's subset: symmetric keys that encrypt and decrypt, make data keys, and hold a policy.

Keys live in the `KmsKeyStore` with their material sealed under the master key. The
ciphertext blobs name their key inside (`lamina.store.sealing`), so Decrypt needs no KeyId,
as on AWS. Key policies are stored and checked as JSON policy documents; they are not yet
enforced (the enforcement of every call comes with IAM's).
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from lamina.arns import Account
from lamina.errors import ClientError, InvalidParameterValue, ValidationError
from lamina.identity.policy import MalformedPolicy, PolicyKind, parse_policy
from lamina.model.kms import DISABLED, ENABLED, ENCRYPT_DECRYPT, SYMMETRIC_DEFAULT, KmsKey
from lamina.store.environment_sealing import key_id_of
from lamina.store.protocols.kms import KmsKeyStore
from lamina.store.sealing import (
    KEY_BYTES,
    SealBroken,
    blob_key_id,
    decrypt_blob,
    encrypt_blob,
)

DEFAULT_POLICY_NAME = "default"
_KEY_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DATA_KEY_BYTES = {"AES_256": 32, "AES_128": 16}


# KMS's errors (AWS's codes; the JSON front answers them with status 400).


class KmsNotFound(ClientError):
    code = "NotFoundException"


class KmsDisabled(ClientError):
    code = "DisabledException"


class InvalidCiphertext(ClientError):
    code = "InvalidCiphertextException"


class IncorrectKey(ClientError):
    code = "IncorrectKeyException"


class MalformedKeyPolicy(ClientError):
    code = "MalformedPolicyDocumentException"


class UnsupportedKmsOperation(ClientError):
    code = "UnsupportedOperationException"


def default_policy(account_id: str) -> str:
    """The key policy KMS gives a key created without one: the account's root (and so
    whatever IAM policies allow) may do everything with it. AWS answers it in this layout."""
    return (
        "{\n"
        '  "Version" : "2012-10-17",\n'
        '  "Id" : "key-default-1",\n'
        '  "Statement" : [ {\n'
        '    "Sid" : "Enable IAM User Permissions",\n'
        '    "Effect" : "Allow",\n'
        '    "Principal" : {\n'
        f'      "AWS" : "arn:aws:iam::{account_id}:root"\n'
        "    },\n"
        '    "Action" : "kms:*",\n'
        '    "Resource" : "*"\n'
        "  } ]\n"
        "}"
    )


def check_key_policy(policy: str) -> None:
    """A key policy must be a resource policy IAM's grammar accepts (a Principal in every
    statement). The messages are IAM's MalformedPolicyDocument texts: KMS's own wording for
    each malformation is not known here."""
    try:
        parse_policy(policy, PolicyKind.RESOURCE)
    except MalformedPolicy as error:
        raise MalformedKeyPolicy(error.message) from None


class KmsService:
    def __init__(
        self, keys: KmsKeyStore, account: Account, clock: Callable[[], float] = time.time
    ) -> None:
        self._keys = keys
        self._account = account
        self._clock = clock

    def key_arn(self, key_id: str) -> str:
        return f"arn:aws:kms:{self._account.region}:{self._account.account_id}:key/{key_id}"

    # ------------------------------------------------------------------ keys

    def create_key(
        self,
        *,
        description: str = "",
        policy: str | None = None,
        key_usage: str | None = None,
        key_spec: str | None = None,
        tags: Sequence[tuple[str, str]] = (),
    ) -> KmsKey:
        if (key_usage or ENCRYPT_DECRYPT) != ENCRYPT_DECRYPT or (
            key_spec or SYMMETRIC_DEFAULT
        ) != SYMMETRIC_DEFAULT:
            # Lamina's own message: its KMS makes only symmetric encryption keys.
            raise UnsupportedKmsOperation(
                f"Only {SYMMETRIC_DEFAULT} keys for {ENCRYPT_DECRYPT} are supported."
            )
        if policy is not None:
            check_key_policy(policy)
        key_id = str(uuid.uuid4())
        key = KmsKey(
            key_id=key_id,
            arn=self.key_arn(key_id),
            account=self._account.account_id,
            created=self._clock(),
            policy=policy if policy is not None else default_policy(self._account.account_id),
            material=secrets.token_bytes(KEY_BYTES),
            description=description,
            tags=tuple(tags),
        )
        self._keys.put_key(key)
        return key

    def find(self, key_ref: str) -> KmsKey:
        """The key a KeyId member names: its id or its ARN (aliases are not kept)."""
        if key_ref.startswith("alias/") or ":alias/" in key_ref:
            name = key_ref if key_ref.startswith("arn:") else self._alias_arn(key_ref)
            raise KmsNotFound(f"Alias {name} is not found.")
        key_id = key_id_of(key_ref) if key_ref.startswith("arn:") else key_ref
        if key_id is None or not _KEY_ID.fullmatch(key_id):
            raise KmsNotFound(f"Invalid keyId {key_ref}")
        key = self._keys.get_key(key_id)
        if key is None or (key_ref.startswith("arn:") and key_ref != key.arn):
            arn = key_ref if key_ref.startswith("arn:") else self.key_arn(key_id)
            raise KmsNotFound(f"Key '{arn}' does not exist")
        return key

    def page(self, marker: str | None, limit: int) -> tuple[list[KmsKey], str | None]:
        """Up to `limit` keys after `marker`, and the marker of the next page (None: last)."""
        keys = self._keys.keys(marker, limit + 1)
        if len(keys) > limit:
            return keys[:limit], keys[limit - 1].key_id
        return keys, None

    def set_enabled(self, key_ref: str, enabled: bool) -> None:
        with self._keys.transaction():
            key = self.find(key_ref)
            self._keys.put_key(replace(key, state=ENABLED if enabled else DISABLED))

    def policy(self, key_ref: str, policy_name: str | None) -> str:
        key = self.find(key_ref)
        _check_policy_name(policy_name)
        return key.policy

    def put_policy(self, key_ref: str, policy_name: str | None, policy: str) -> None:
        with self._keys.transaction():
            key = self.find(key_ref)
            _check_policy_name(policy_name)
            check_key_policy(policy)
            self._keys.put_key(replace(key, policy=policy))

    # ------------------------------------------------------------- cryptography

    def _usable(self, key_ref: str) -> KmsKey:
        key = self.find(key_ref)
        if not key.enabled:
            raise KmsDisabled(f"{key.arn} is disabled.")
        return key

    def encrypt(
        self, key_ref: str, plaintext: bytes, context: Mapping[str, str] | None = None
    ) -> tuple[bytes, KmsKey]:
        key = self._usable(key_ref)
        return encrypt_blob(key.key_id, key.material, plaintext, context), key

    def decrypt(
        self,
        blob: bytes,
        context: Mapping[str, str] | None = None,
        key_ref: str | None = None,
    ) -> tuple[bytes, KmsKey]:
        # AWS says nothing more about a blob that does not open: the message is empty.
        try:
            key_id = blob_key_id(blob)
        except SealBroken:
            raise InvalidCiphertext("") from None
        if key_ref is not None:
            wanted = self.find(key_ref)
            if wanted.key_id != key_id:
                raise IncorrectKey(
                    "The key ID in the request does not identify a CMK that can perform this "
                    "operation."
                )
        key = self._keys.get_key(key_id)
        if key is None:
            raise InvalidCiphertext("")
        if not key.enabled:
            raise KmsDisabled(f"{key.arn} is disabled.")
        try:
            return decrypt_blob(key.material, blob, context), key
        except SealBroken:
            raise InvalidCiphertext("") from None

    def generate_data_key(
        self,
        key_ref: str,
        *,
        key_spec: str | None = None,
        number_of_bytes: int | None = None,
        context: Mapping[str, str] | None = None,
    ) -> tuple[bytes, bytes, KmsKey]:
        """A new data key: its plaintext and its blob under the key `key_ref` names."""
        if (key_spec is None) == (number_of_bytes is None):
            raise ValidationError("Please specify either number of bytes or key spec.")
        size = _DATA_KEY_BYTES[key_spec] if key_spec is not None else number_of_bytes
        assert size is not None
        plaintext = secrets.token_bytes(size)
        blob, key = self.encrypt(key_ref, plaintext, context)
        return plaintext, blob, key

    def _alias_arn(self, alias: str) -> str:
        return f"arn:aws:kms:{self._account.region}:{self._account.account_id}:{alias}"


def _check_policy_name(policy_name: str | None) -> None:
    # A key has one policy, "default". AWS's text for another name is unverified: this is
    # the one other emulators answer.
    if policy_name not in (None, DEFAULT_POLICY_NAME):
        raise KmsNotFound("No such policy exists")


def check_function_key(keys: KmsKeyStore, kms_key_arn: str | None) -> None:
    """Lambda's check of a function's `KMSKeyArn`: it must name a key that exists.

    AWS refuses an unknown key when Lambda tries to create a grant on it; the message wraps
    KMS's answer (its two parts are as AWS words them; their composition for a missing key
    follows the same shape AWS uses for its other KMS failures).
    """
    if not kms_key_arn:
        return
    key_id = key_id_of(kms_key_arn)
    key = keys.get_key(key_id) if key_id is not None else None
    if key is not None and key.arn == kms_key_arn:
        return
    if ":alias/" in kms_key_arn:
        kms_code, kms_message = (
            "InvalidArnException",
            "Key Aliases are not supported for this operation.",
        )
    else:
        kms_code, kms_message = "NotFoundException", f"Key '{kms_key_arn}' does not exist"
    raise InvalidParameterValue(
        "Lambda was unable to configure access to your environment variables because the KMS "
        "key is invalid for CreateGrant. Please check your KMS key settings. "
        f"KMS Exception: {kms_code} KMS Message: {kms_message}"
    )
