"""The control plane without a server: real SQLite stores in a directory, a stub S3."""

from __future__ import annotations

import contextlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lamina.arns import Account
from lamina.control.code import CodeSource
from lamina.control.context import Domain
from lamina.errors import LaminaError
from lamina.store.sqlite import open_stores

ACCOUNT = Account("123456789012", "us-east-1")
EXECUTION_ROLE = "arn:aws:iam::123456789012:role/unit-test"
HANDLER = "def handler(event, context):\n    return event\n"


class S3Objects:
    """The S3 reader the control plane uses for code in S3, serving objects from memory."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.reads: list[tuple[str, str, str | None]] = []

    def read(self, bucket: str, key: str, version: str | None) -> bytes:
        self.reads.append((bucket, key, version))
        return self.objects[(bucket, key)]


def open_domain(data_dir: Path, account_concurrency: int = 1000) -> Domain:
    return Domain(
        stores=open_stores(data_dir),
        account=ACCOUNT,
        s3=S3Objects(),
        account_concurrency=account_concurrency,
    )


def function_settings(**overrides: Any) -> dict[str, Any]:
    """CreateFunction's settings as the API layer hands them to `FunctionService.create`."""
    return {
        "role": EXECUTION_ROLE,
        "runtime": "python3.12",
        "handler": "app.handler",
        **overrides,
    }


def archive(files: dict[str, str] | None = None) -> bytes:
    """A zip whose bytes depend only on `files` (fixed timestamps), so equal code hashes equal."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as package:
        for name, content in (files or {"app.py": HANDLER}).items():
            package.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), content)
    return buffer.getvalue()


def source(files: dict[str, str] | None = None) -> CodeSource:
    """Inline code as CreateFunction/UpdateFunctionCode carry it."""
    return CodeSource(zip_file=archive(files))


@contextlib.contextmanager
def fails_with(error: type[LaminaError], message: str) -> Iterator[None]:
    """The block raises `error` with exactly `message` and exactly `error`'s AWS code (a
    subclass that only carries more detail, such as FunctionNotFound, counts)."""
    with pytest.raises(LaminaError) as raised:
        yield
    got = raised.value
    assert isinstance(got, error) and got.code == error.code, f"{got.code}: {got.message}"
    assert got.message == message
