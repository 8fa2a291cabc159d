"""Sealing at rest: AES-256-GCM under keys the database does not hold.

Two kinds of sealed bytes, both authenticated with a caller's context (so a sealed value
copied into another row, or another function's document, no longer opens):

- Under the **master key**, a 32-byte key kept in a file outside the database
  (`<data dir>/master-key` by default, mode 0600). It seals KMS keys' material and the
  environment variables of functions that name no KMS key. A copy of the database without
  that file reveals neither.
- Under a **KMS key's material** (`encrypt_blob`): KMS's ciphertext blob, which names its
  key inside, so that Decrypt needs no KeyId, as on AWS.

Why here and not in `identity/`: the stores seal and unseal as they write and read (the
domain and the protocols keep plaintext), and the store layer may not import upward.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lamina.store.errors import StorageError

KEY_BYTES = 32
"""AES-256: the master key and every KMS key's material."""

_NONCE_BYTES = 12
_FINGERPRINT_BYTES = 8
_MASTER_FORMAT = b"\x01"
_KMS_FORMAT = b"\x02"
# A KMS key id is a UUID: always 36 ASCII characters, so the blob needs no length field.
_KEY_ID_BYTES = 36
MASTER_KEY_FILE = "master-key"


class SealBroken(Exception):
    """Sealed bytes that do not open: altered, truncated, under another key or context."""


class MasterKey:
    """The key outside the database that everything sealed at rest depends on."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a master key is {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)
        # Not secret (a hash of 256 random bits): names the key in sealed values and errors.
        self.fingerprint = hashlib.sha256(b"lamina master key\0" + key).digest()[
            :_FINGERPRINT_BYTES
        ]

    def __repr__(self) -> str:
        return f"MasterKey({self.fingerprint.hex()})"

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        header = _MASTER_FORMAT + self.fingerprint
        return header + nonce + self._aead.encrypt(nonce, plaintext, header + context)

    def unseal(self, sealed: bytes, context: bytes) -> bytes:
        """The plaintext `seal` was given; SealBroken if `sealed` is not one of this key's
        seals with this context."""
        head = 1 + _FINGERPRINT_BYTES
        header, nonce = sealed[:head], sealed[head : head + _NONCE_BYTES]
        body = sealed[head + _NONCE_BYTES :]
        if header[:1] != _MASTER_FORMAT or len(nonce) != _NONCE_BYTES:
            raise SealBroken("not a value sealed under a master key")
        if header[1:] != self.fingerprint:
            raise SealBroken(
                f"sealed under master key {header[1:].hex()}, but this node's master key is "
                f"{self.fingerprint.hex()}: every node of a store needs the same key file"
            )
        try:
            return self._aead.decrypt(nonce, body, header + context)
        except InvalidTag:
            raise SealBroken("a value sealed under the master key was altered") from None


def open_master_key(path: Path) -> MasterKey:
    """The master key in the file at `path`, made (32 random bytes, mode 0600) if missing.

    Racing starters all end up with the one file that won: the new key is written whole to a
    private draft, then hard-linked into place, which fails if another process linked first.
    """
    try:
        with contextlib.suppress(FileNotFoundError):
            return _read(path)
        _create(path)
        return _read(path)
    except OSError as error:
        raise StorageError(f"could not keep the master key in {path}: {error}") from error


def _read(path: Path) -> MasterKey:
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise StorageError(f"{path} holds {len(key)} bytes, not a {KEY_BYTES}-byte master key")
    return MasterKey(key)


def _create(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(secrets.token_bytes(KEY_BYTES))
            file.flush()
            # On disk before it has its name: losing the key loses every sealed value.
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: its key stands
            os.link(draft, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(draft)


# KMS ciphertext blobs.


def encryption_context_bytes(context: Mapping[str, str] | None) -> bytes:
    """The canonical form of a KMS encryption context: order does not matter, as on AWS."""
    return orjson.dumps(dict(sorted((context or {}).items())))


def encrypt_blob(
    key_id: str, material: bytes, plaintext: bytes, context: Mapping[str, str] | None = None
) -> bytes:
    """KMS's ciphertext blob of `plaintext` under the key `key_id` with `material`."""
    named = key_id.encode("ascii")
    if len(named) != _KEY_ID_BYTES:
        raise ValueError(f"a KMS key id is {_KEY_ID_BYTES} characters: {key_id!r}")
    nonce = secrets.token_bytes(_NONCE_BYTES)
    header = _KMS_FORMAT + named
    aad = header + encryption_context_bytes(context)
    return header + nonce + AESGCM(material).encrypt(nonce, plaintext, aad)


def blob_key_id(blob: bytes) -> str:
    """The id of the key a ciphertext blob was made under; SealBroken if it is no blob."""
    head = 1 + _KEY_ID_BYTES
    if len(blob) < head + _NONCE_BYTES + 16 or blob[:1] != _KMS_FORMAT:
        raise SealBroken("not a KMS ciphertext blob")
    try:
        return blob[1:head].decode("ascii")
    except UnicodeDecodeError:
        raise SealBroken("not a KMS ciphertext blob") from None


def decrypt_blob(material: bytes, blob: bytes, context: Mapping[str, str] | None = None) -> bytes:
    """The plaintext of a blob `encrypt_blob` made with `material` and the same context."""
    head = 1 + _KEY_ID_BYTES
    blob_key_id(blob)
    nonce, body = blob[head : head + _NONCE_BYTES], blob[head + _NONCE_BYTES :]
    aad = blob[:head] + encryption_context_bytes(context)
    try:
        return AESGCM(material).decrypt(nonce, body, aad)
    except InvalidTag:
        raise SealBroken("the blob does not open with this key and context") from None
