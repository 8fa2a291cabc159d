"""`lamina events`: queued, in-flight, retrying and failed asynchronous events.

The server here runs one event at a time at AWS's real timing, so states hold still long
enough to look at: a retry is a minute away, a slow event keeps the only worker busy.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.archives import make_zip
from tests.support.asynchronous import (
    HANDLERS,
    events_shown,
    lamina_events,
    send,
    wait_for_events,
)
from tests.support.lambda_api import ROLE
from tests.support.server import LaminaServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    instance = LaminaServer(
        tmp_path_factory.mktemp("events-cli") / "data", env={"LAMINA_ASYNC_WORKERS": "1"}
    ).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def client(server: LaminaServer) -> Iterator[Any]:
    lambda_client = server.client()
    yield lambda_client
    lambda_client.close()


def test_events_shows_every_state(server: LaminaServer, client: Any) -> None:
    def make(handler: str, **overrides: Any) -> str:
        name = f"fn-{uuid.uuid4().hex[:10]}"
        client.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=ROLE,
            Handler=f"app.{handler}",
            Code={"ZipFile": make_zip({"app.py": HANDLERS})},
            **overrides,
        )
        return name

    data_dir = server.data_dir
    failing = make("fail")
    client.put_function_event_invoke_config(FunctionName=failing, MaximumRetryAttempts=0)
    lost = send(client, failing, {"n": 1})
    answer = wait_for_events(data_dir, failing, failed=1)
    (event,) = answer["Events"]
    assert (event["RequestId"], event["State"]) == (lost, "failed")
    assert event["LastError"] == 'RetriesExhausted: ValueError: boom {"n": 1}'

    retrying = make("fail")
    send(client, retrying, {"n": 2})
    (event,) = wait_for_events(data_dir, retrying, retrying=1)["Events"]
    assert event["State"] == "retrying" and event["FunctionErrors"] == 1
    assert event["LastError"] == 'ValueError: boom {"n": 2}'
    assert event["NextAttemptInSeconds"] > 30  # AWS's first retry comes after about a minute

    slow = make("slow", Timeout=60)
    sent = [send(client, slow, {"seconds": 50}) for _ in range(3)]
    answer = wait_for_events(data_dir, slow, in_flight=1, queued=2)
    assert sorted(event["RequestId"] for event in answer["Events"]) == sorted(sent)

    table = lamina_events(data_dir, slow)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["FUNCTION", "QUEUED", "RETRYING", "IN_FLIGHT", "FAILED"]
    assert lines[1].split() == [slow, "2", "0", "1", "0"]
    assert sum(" in_flight " in line for line in lines) == 1
    assert sum(" queued " in line for line in lines) == 2

    summary = lamina_events(data_dir).stdout
    for name in (failing, retrying, slow):
        assert name in summary


def test_clean_shutdown_hands_running_events_back(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = LaminaServer(data_dir, env={"LAMINA_ASYNC_WORKERS": "1"}).start()
    try:
        client = server.client()
        client.create_function(
            FunctionName="slow",
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.slow",
            Timeout=60,
            Code={"ZipFile": make_zip({"app.py": HANDLERS})},
        )
        for _ in range(2):
            send(client, "slow", {"seconds": 50})
        wait_for_events(data_dir, "slow", in_flight=1, queued=1)
        client.close()
    finally:
        server.stop()
    # Stopped mid-invocation: the running event is queued again, ready for the next start.
    assert events_shown(data_dir, "slow")["Functions"]["slow"]["queued"] == 2


def test_events_without_data_is_an_error(tmp_path: Path) -> None:
    result = lamina_events(tmp_path / "nothing")
    assert result.returncode == 1
    assert "no Lamina data" in result.stderr
