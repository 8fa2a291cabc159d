"""The import contracts in pyproject.toml hold, and they catch what they are meant to.

`make lint` runs the same `lint-imports`; these tests also prove that an upward import or a
`sqlite3` import outside `store/` breaks it, by planting one in a copy of the package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the project's contracts, over the `lamina` under `package_parent`."""
    environment = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=package_parent,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "src" / "lamina",
        tmp_path / "lamina",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp_path


def plant(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 4 kept, 0 broken." in result.stdout


def test_an_upward_import_breaks_the_layers(package_copy: Path) -> None:
    plant(package_copy / "lamina" / "store" / "blobs.py", "import lamina.invoke.service")
    result = lint_imports(package_copy)
    assert result.returncode != 0
    assert "Layers only point down BROKEN" in result.stdout
    assert "lamina.store.blobs -> lamina.invoke.service" in result.stdout


def test_sqlite_outside_store_breaks_the_sql_contract(package_copy: Path) -> None:
    plant(package_copy / "lamina" / "observability" / "billing.py", "import sqlite3")
    result = lint_imports(package_copy)
    assert result.returncode != 0
    assert "nothing else imports sqlite3 BROKEN" in result.stdout
    assert "lamina.observability.billing -> sqlite3" in result.stdout


def test_redis_outside_store_redis_breaks_the_redis_contract(package_copy: Path) -> None:
    # Not even elsewhere in store/: the soft state stays in one package.
    plant(package_copy / "lamina" / "store" / "blobs.py", "import redis")
    result = lint_imports(package_copy)
    assert result.returncode != 0
    assert "nothing else imports redis BROKEN" in result.stdout
    assert "lamina.store.blobs -> redis" in result.stdout
