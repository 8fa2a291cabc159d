"""With authentication on, CloudWatch reads and Lamina's usage and top endpoints need a
valid signature, and `/metrics` a bearer token when one is configured."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.lamina_cli import run_lamina
from tests.support.server import LaminaServer

KEY, SECRET, TOKEN = "AKIDLAMINATEST", "lamina-secret-key", "scrape-me"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    server = LaminaServer(
        tmp_path_factory.mktemp("secured") / "data",
        env={
            "LAMINA_ACCESS_KEY_ID": KEY,
            "LAMINA_SECRET_ACCESS_KEY": SECRET,
            "LAMINA_METRICS_TOKEN": TOKEN,
        },
    ).start()
    yield server
    server.stop()


def status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        error.close()
        return error.code


def test_metrics_needs_the_bearer_token(secured: LaminaServer) -> None:
    url = f"{secured.endpoint}/metrics"
    assert status(url) == 401
    assert status(url, {"Authorization": "Bearer wrong"}) == 401
    assert status(url, {"Authorization": f"Bearer {TOKEN}"}) == 200


@pytest.mark.parametrize("path", ["/_lamina/usage", "/_lamina/top"])
def test_lamina_endpoints_need_a_signature(secured: LaminaServer, path: str) -> None:
    assert status(f"{secured.endpoint}{path}") == 403


def test_cloudwatch_needs_the_right_key(secured: LaminaServer) -> None:
    now = datetime.now(UTC)
    params: dict[str, Any] = {
        "Namespace": "AWS/Lambda",
        "MetricName": "Invocations",
        "StartTime": now - timedelta(minutes=5),
        "EndTime": now,
        "Period": 60,
        "Statistics": ["Sum"],
    }
    stranger = secured.client("cloudwatch", access_key="AKIDSTRANGER", secret_key="nope")
    with pytest.raises(ClientError) as refused:
        stranger.get_metric_statistics(**params)
    # The query protocol's name for an unknown key (UnrecognizedClientException elsewhere).
    assert refused.value.response["Error"]["Code"] == "InvalidClientTokenId"
    owner = secured.client("cloudwatch", access_key=KEY, secret_key=SECRET)
    assert owner.get_metric_statistics(**params)["Datapoints"] == []


def test_the_cli_signs_with_the_configured_key(secured: LaminaServer, tmp_path: Path) -> None:
    env = {"LAMINA_ACCESS_KEY_ID": KEY, "LAMINA_SECRET_ACCESS_KEY": SECRET}
    cost = run_lamina("cost", "--json", "--endpoint", secured.endpoint, env=env)
    assert cost.returncode == 0, cost.stderr
    assert json.loads(cost.stdout)["Usage"] == []
    top = run_lamina("top", "--once", "--endpoint", secured.endpoint, env=env)
    assert top.returncode == 0, top.stderr
    unsigned = run_lamina(
        "cost",
        "--endpoint",
        secured.endpoint,
        env={"AWS_ACCESS_KEY_ID": "AKIDSTRANGER", "AWS_SECRET_ACCESS_KEY": "nope"},
    )
    assert unsigned.returncode == 1
    assert "refused /_lamina/usage: HTTP 403" in unsigned.stderr
