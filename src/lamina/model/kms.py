"""KMS keys as Lamina keeps them (the KMS subset: symmetric encryption keys only)."""

from __future__ import annotations

from dataclasses import dataclass, field

ENABLED = "Enabled"
DISABLED = "Disabled"

SYMMETRIC_DEFAULT = "SYMMETRIC_DEFAULT"
ENCRYPT_DECRYPT = "ENCRYPT_DECRYPT"


@dataclass(frozen=True)
class KmsKey:
    key_id: str  # a UUID, as AWS's
    arn: str  # arn:aws:kms:<region>:<account>:key/<key_id>
    account: str
    created: float  # epoch seconds
    policy: str  # the key policy as the caller gave it (or the default one)
    # The 32 bytes of AES-256 key material. The stores seal it under the master key; it is
    # never shown (repr, logs, API answers).
    material: bytes = field(repr=False)
    description: str = ""
    state: str = ENABLED
    key_usage: str = ENCRYPT_DECRYPT
    key_spec: str = SYMMETRIC_DEFAULT
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def enabled(self) -> bool:
        return self.state == ENABLED
