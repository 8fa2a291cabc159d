"""Deployment archives: where they come from and the checks they must pass."""

from __future__ import annotations

import base64
import hashlib
import io
import stat
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol

from lamina.constants import UNZIPPED_CODE_MAX_BYTES, ZIPPED_CODE_MAX_BYTES
from lamina.errors import InvalidParameterValue, RequestEntityTooLarge

_UNZIP_FAILED = "Could not unzip uploaded file. Please check your file, then try to upload again."


class S3Reader(Protocol):
    """Reads code archives from any S3-compatible store."""

    def read(self, bucket: str, key: str, version: str | None) -> bytes: ...


@dataclass(frozen=True)
class CodeSource:
    """Where a deployment package comes from: inline bytes or an S3 object."""

    zip_file: bytes | None = None
    s3_bucket: str | None = None
    s3_key: str | None = None
    s3_object_version: str | None = None
    image_uri: str | None = None

    def s3_location(self) -> dict[str, str] | None:
        """The S3 object to read, when that is the one source named; else None, and `read`
        takes the inline bytes or says what is wrong with the request."""
        if self.image_uri or self.zip_file is not None or not (self.s3_bucket and self.s3_key):
            return None
        location = {"S3Bucket": self.s3_bucket, "S3Key": self.s3_key}
        if self.s3_object_version:
            location["S3ObjectVersion"] = self.s3_object_version
        return location

    @classmethod
    def from_s3_location(cls, location: dict[str, str]) -> CodeSource:
        return cls(
            s3_bucket=location["S3Bucket"],
            s3_key=location["S3Key"],
            s3_object_version=location.get("S3ObjectVersion"),
        )

    def read(self, s3: S3Reader) -> bytes:
        if self.image_uri:
            raise InvalidParameterValue(
                "Container images are not supported by Lamina: deploy a .zip package "
                "(ZipFile or S3Bucket/S3Key) instead of ImageUri"
            )
        if self.zip_file is not None:
            if self.s3_bucket or self.s3_key:
                raise InvalidParameterValue(
                    "Please provide a source for function code: ZipFile or S3Bucket/S3Key, "
                    "not both."
                )
            return self.zip_file
        if self.s3_bucket and self.s3_key:
            return s3.read(self.s3_bucket, self.s3_key, self.s3_object_version)
        if self.s3_bucket or self.s3_key:
            raise InvalidParameterValue("Both S3Bucket and S3Key must be provided for S3 code.")
        raise InvalidParameterValue("Please provide a source for function code.")


@dataclass(frozen=True)
class CodeArchive:
    """A checked zip archive: its hash as Lambda reports it and its sizes."""

    data: bytes
    sha256: str
    size: int
    unzipped_size: int
    blob_key: str


def inspect_archive(data: bytes, limit: int = UNZIPPED_CODE_MAX_BYTES) -> CodeArchive:
    """Refuse corrupt archives, paths escaping the root, and zip bombs, saying which."""
    if len(data) > ZIPPED_CODE_MAX_BYTES:
        raise RequestEntityTooLarge(
            f"Zipped size must be smaller than {ZIPPED_CODE_MAX_BYTES} bytes"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError):
        raise InvalidParameterValue(_UNZIP_FAILED) from None
    total = 0
    with archive:
        for entry in entries:
            _check_entry_path(entry.filename)
            if _is_symlink(entry):
                _check_symlink(entry.filename, archive.read(entry).decode("utf-8", "replace"))
            if entry.is_dir():
                continue
            # Count real decompressed bytes: declared sizes in the headers can lie.
            try:
                with archive.open(entry) as member:
                    while chunk := member.read(1 << 20):
                        total += len(chunk)
                        if total > limit:
                            raise InvalidParameterValue(
                                f"Unzipped size must be smaller than {limit} bytes"
                            )
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError):
                raise InvalidParameterValue(_UNZIP_FAILED) from None
    digest = hashlib.sha256(data)
    return CodeArchive(
        data=data,
        sha256=base64.b64encode(digest.digest()).decode(),
        size=len(data),
        unzipped_size=total,
        blob_key=digest.hexdigest(),
    )


def _check_entry_path(name: str) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise InvalidParameterValue(
            f"The zip file has an entry with an absolute path, which is not allowed: {name}"
        )
    if ".." in path.parts:
        raise InvalidParameterValue(
            f"The zip file has an entry that escapes the archive root ('..'): {name}"
        )


def _is_symlink(entry: zipfile.ZipInfo) -> bool:
    return entry.create_system == 3 and stat.S_ISLNK(entry.external_attr >> 16)


def _check_symlink(name: str, target: str) -> None:
    resolved = PurePosixPath(name).parent / target
    depth = 0
    for part in resolved.parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            break
    if target.startswith("/") or depth < 0:
        raise InvalidParameterValue(
            f"The zip file has a symbolic link that points outside the archive: {name} -> {target}"
        )
