"""Building deployment archives in memory."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping

HANDLER_SOURCE = "def handler(event, context):\n    return event\n"


def make_zip(files: dict[str, str | bytes] | None = None) -> bytes:
    files = files if files is not None else {"app.py": HANDLER_SOURCE}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def make_package(files: Mapping[str, str], executable: tuple[str, ...] = ("bootstrap",)) -> bytes:
    """A zip that records Unix modes, so `bootstrap` arrives executable (as `zip` would keep it)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (0o100755 if name in executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return buffer.getvalue()
