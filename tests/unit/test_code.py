"""Archive checks: what a deployment package must satisfy before it is stored."""

from __future__ import annotations

import base64
import hashlib
import io
import stat
import zipfile

import pytest

from lamina.control.code import CodeSource, inspect_archive
from lamina.errors import InvalidParameterValue, RequestEntityTooLarge
from tests.support.archives import make_zip


def zip_with(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return buffer.getvalue()


def symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def test_valid_archive_reports_hash_and_sizes() -> None:
    data = make_zip({"app.py": "x = 1\n", "lib/util.py": "y = 2\n"})
    archive = inspect_archive(data)
    assert archive.sha256 == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert archive.size == len(data)
    assert archive.unzipped_size == len("x = 1\n") + len("y = 2\n")
    assert archive.blob_key == hashlib.sha256(data).hexdigest()


def test_corrupt_archive_is_refused() -> None:
    with pytest.raises(InvalidParameterValue, match="Could not unzip uploaded file"):
        inspect_archive(b"PK\x03\x04 definitely not a zip")


def test_truncated_archive_is_refused() -> None:
    data = make_zip({"app.py": "x" * 10_000})
    with pytest.raises(InvalidParameterValue, match="Could not unzip"):
        inspect_archive(data[: len(data) // 2])


@pytest.mark.parametrize("name", ["/etc/passwd", "../escape.py", "lib/../../escape.py"])
def test_entries_escaping_the_root_are_refused(name: str) -> None:
    with pytest.raises(InvalidParameterValue, match=r"absolute path|escapes the archive root"):
        inspect_archive(zip_with([(name, b"x")]))


def test_symlink_inside_archive_is_allowed() -> None:
    archive = inspect_archive(zip_with([("real.py", b"x"), symlink("alias.py", "real.py")]))
    assert archive.size > 0


@pytest.mark.parametrize("target", ["/etc/shadow", "../../outside", "sub/../../x"])
def test_symlink_escaping_archive_is_refused(target: str) -> None:
    with pytest.raises(InvalidParameterValue, match="symbolic link that points outside"):
        inspect_archive(zip_with([symlink("link", target)]))


def test_zip_bomb_is_refused_by_real_decompressed_size() -> None:
    bomb = zip_with([("zeros.bin", b"\0" * (3 * 1024 * 1024))])
    assert len(bomb) < 20_000
    with pytest.raises(InvalidParameterValue, match="Unzipped size must be smaller than"):
        inspect_archive(bomb, limit=1024 * 1024)


def test_zip_bomb_with_lying_header_is_refused() -> None:
    data = bytearray(zip_with([("zeros.bin", b"\0" * (2 * 1024 * 1024))]))
    # Forge the declared uncompressed size in the central directory to a tiny value.
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")
    with pytest.raises(InvalidParameterValue):
        inspect_archive(bytes(data), limit=1024 * 1024)


def test_oversized_zip_is_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lamina.control.code.ZIPPED_CODE_MAX_BYTES", 100)
    with pytest.raises(RequestEntityTooLarge, match="Zipped size must be smaller than 100 bytes"):
        inspect_archive(make_zip({"a.py": "x" * 500}))


class NoS3:
    def read(self, bucket: str, key: str, version: str | None) -> bytes:
        raise AssertionError("S3 must not be read")


def test_code_source_requires_exactly_one_source() -> None:
    with pytest.raises(InvalidParameterValue, match="not both"):
        CodeSource(zip_file=b"x", s3_bucket="b", s3_key="k").read(NoS3())
    with pytest.raises(InvalidParameterValue, match="Both S3Bucket and S3Key"):
        CodeSource(s3_bucket="b").read(NoS3())
    with pytest.raises(InvalidParameterValue, match="source for function code"):
        CodeSource().read(NoS3())
    with pytest.raises(InvalidParameterValue, match="Container images are not supported"):
        CodeSource(image_uri="123.dkr.ecr/x:latest").read(NoS3())
