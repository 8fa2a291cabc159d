"""Every store contract suite runs once per backend in `tests.support.backends.BACKENDS`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backends import BACKENDS, Backend


@pytest.fixture(params=sorted(BACKENDS))
def store_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    instance = BACKENDS[request.param](tmp_path)
    yield instance
    instance.close()
