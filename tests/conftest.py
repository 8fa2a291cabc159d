"""Fixtures: one real Lamina server per test session, driven over HTTP with boto3."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE
from tests.support.peers import MotoServer
from tests.support.server import LaminaServer


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    instance = LaminaServer(tmp_path_factory.mktemp("lamina") / "data").start()
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def lambda_client(server: LaminaServer) -> Iterator[Any]:
    client = server.client("lambda")
    yield client
    client.close()


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    return lambda prefix="fn": f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def create_function(
    lambda_client: Any, unique_name: Callable[[str], str]
) -> Callable[..., dict[str, Any]]:
    """Create a Python function with a fresh name; keyword arguments override defaults."""

    def create(**overrides: Any) -> dict[str, Any]:
        params: dict[str, Any] = {
            "FunctionName": unique_name("fn"),
            "Runtime": "python3.12",
            "Role": ROLE,
            "Handler": "app.handler",
            "Code": {"ZipFile": make_zip()},
        }
        params.update(overrides)
        result: dict[str, Any] = lambda_client.create_function(**params)
        return result

    return create


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    instance = MotoServer(tmp_path_factory.mktemp("moto")).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def sqs(moto: MotoServer) -> Iterator[Any]:
    """An SQS client on the moto server (destinations, DLQs, schedule results)."""
    sqs_client = moto.client("sqs")
    yield sqs_client
    sqs_client.close()
