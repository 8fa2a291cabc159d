"""Where KMS keys are kept (`lamina.model.kms`).

The store keeps and finds; KMS's rules and errors are the control plane's
(`lamina.control.kms`). A key's material is sealed under the master key in the store
(`lamina.store.sealing`), so a copy of the database alone cannot decrypt anything.
"""

from __future__ import annotations

from typing import Protocol

from lamina.model.kms import KmsKey
from lamina.store.protocols.transactional import Transactional


class KmsKeyStore(Transactional, Protocol):
    def put_key(self, key: KmsKey) -> None:
        """Insert or replace the key with `key.key_id`."""
        ...

    def get_key(self, key_id: str) -> KmsKey | None: ...

    def keys(self, after: str | None, limit: int) -> list[KmsKey]:
        """At most `limit` keys with ids after `after`, in id order."""
        ...
