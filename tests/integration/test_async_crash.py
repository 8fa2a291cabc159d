"""Crash safety: kill -9 the server with events queued and running; none is lost.

Every event reports its request id to an SQS queue (its OnSuccess and OnFailure
destination) on the moto server, which outlives the crash. Delivery is at-least-once, so the
test counts distinct request ids: each accepted (202) event must show up at least once.
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support.archives import make_zip
from tests.support.asynchronous import HANDLERS, events_shown, start_server
from tests.support.lambda_api import ROLE
from tests.support.peers import MotoServer
from tests.support.queues import Queue
from tests.support.server import LaminaServer

EVENTS = 300


@pytest.mark.slow
def test_no_accepted_event_is_lost_when_the_server_is_killed(
    moto: MotoServer, sqs: Any, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    env = {"LAMINA_ASYNC_WORKERS": "8"}
    server = start_server(data_dir, moto, **env)
    results = Queue(sqs)
    name = f"crash-{uuid.uuid4().hex[:8]}"
    try:
        client = server.client(max_pool_connections=16)
        client.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.slow",
            Code={"ZipFile": make_zip({"app.py": HANDLERS})},
        )
        client.put_function_event_invoke_config(
            FunctionName=name,
            DestinationConfig={
                "OnSuccess": {"Destination": results.arn},
                "OnFailure": {"Destination": results.arn},
            },
        )

        def send(n: int) -> str:
            response = client.invoke(
                FunctionName=name,
                InvocationType="Event",
                Payload=json.dumps({"seconds": 0.15, "n": n}).encode(),
            )
            assert response["StatusCode"] == 202
            response["Payload"].read()
            return str(response["ResponseMetadata"]["RequestId"])

        with ThreadPoolExecutor(16) as pool:
            accepted = set(pool.map(send, range(EVENTS)))
        before = events_shown(data_dir, name)["Functions"].get(name, {})
        server.kill()
        client.close()
    finally:
        server.kill()
    assert len(accepted) == EVENTS
    # The crash came with work both waiting and running (8 workers, 45 s of sleeping).
    assert before["queued"] > 0 and before["in_flight"] > 0

    restarted = LaminaServer(data_dir, env={**server.env, **env}).start()
    try:
        seen: set[str] = set()
        attempts = 0
        while not accepted <= seen and attempts < 10:
            attempts += 1
            for message in results.receive(EVENTS, timeout=30):
                record = json.loads(message["Body"])
                seen.add(record["requestContext"]["requestId"])
        assert accepted - seen == set(), f"{len(accepted - seen)} accepted events were lost"
        assert seen <= accepted
    finally:
        restarted.stop()
    assert "were in flight at a crash" in restarted.log_path.read_text()
