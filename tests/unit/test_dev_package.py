"""What `lamina dev` zips and watches (one rule for both), and the same bytes for the same files."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from lamina.dev.package import build_package, is_ignored


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        "__pycache__/app.cpython-312.pyc",
        "pkg/__pycache__/mod.pyc",
        "node_modules/.cache/babel/x.json",
        ".app.py.swp",
        "app.py~",
        "#app.py#",
        ".#app.py",
        "4913",
        "app.py___jb_tmp___",
        ".lamina/lamina.db",
        ".venv/bin/python",
    ],
)
def test_ignored(path: str) -> None:
    assert is_ignored(PurePosixPath(path))


@pytest.mark.parametrize(
    "path", ["app.py", "node_modules/left-pad/index.js", "lib/cache/x.py", ".env", "bootstrap"]
)
def test_kept(path: str) -> None:
    assert not is_ignored(PurePosixPath(path))


def make_tree(root: Path) -> None:
    (root / "lib").mkdir(parents=True)
    (root / "app.py").write_text("def handler(e, c):\n    return 1\n")
    (root / "lib" / "util.py").write_text("X = 1\n")
    (root / "bootstrap").write_text("#!/bin/sh\n")
    (root / "bootstrap").chmod(0o755)
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "app.cpython-312.pyc").write_bytes(b"\0")
    (root / ".app.py.swp").write_bytes(b"\0")


def test_package_contents_and_modes(tmp_path: Path) -> None:
    make_tree(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    (data / "lamina.db").write_bytes(b"\0")
    package = build_package(tmp_path, excluded=data.resolve())
    with zipfile.ZipFile(io.BytesIO(package.archive)) as archive:
        assert archive.namelist() == ["app.py", "bootstrap", "lib/util.py"]
        mode = archive.getinfo("bootstrap").external_attr >> 16
        assert mode & 0o111, "the executable bit survives"
    assert package.files == 3


def test_same_files_give_the_same_bytes(tmp_path: Path) -> None:
    make_tree(tmp_path)
    first = build_package(tmp_path)
    # A touch changes the modification time, not the package.
    os.utime(tmp_path / "app.py", (1, 1))
    assert build_package(tmp_path).digest == first.digest
    (tmp_path / "app.py").write_text("def handler(e, c):\n    return 2\n")
    assert build_package(tmp_path).digest != first.digest
