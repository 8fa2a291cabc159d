"""Building deployment archives in memory."""

from __future__ import annotations

import io
import zipfile

HANDLER_SOURCE = "def handler(event, context):\n    return event\n"


def make_zip(files: dict[str, str | bytes] | None = None) -> bytes:
    files = files if files is not None else {"app.py": HANDLER_SOURCE}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()
