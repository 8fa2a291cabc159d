"""Asynchronous invocation (InvocationType=Event): a server with fast retries, its functions,
and the module-scoped fixtures the test_async_* modules share.

A module opts in by binding the fixtures at its top level (`client = asynchronous.client`),
so each module gets a server of its own.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE
from tests.support.lamina_cli import run_lamina
from tests.support.peers import MotoServer
from tests.support.queues import Queue
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

# Every interval of asynchronous delivery runs 100 times faster: a minute takes 0.6 s.
FAST = {"LAMINA_ASYNC_RETRY_SCALE": "0.01", "LAMINA_ASYNC_LEASE_SECONDS": "2"}

HANDLERS = """
import json, time

def echo(event, context):
    return event

def ok(event, context):
    return "ok"

def fail(event, context):
    raise ValueError("boom " + json.dumps(event))

def slow(event, context):
    time.sleep(event.get("seconds", 0.3) if isinstance(event, dict) else 0.3)
    return "slept"

def chain(event, context):
    depth = 0
    while isinstance(event, dict) and "requestPayload" in event:
        depth += 1
        event = event["requestPayload"]
    if depth >= 20:
        raise RuntimeError("depth %d" % depth)
    return "ok"
"""


def start_server(data_dir: Path, moto: MotoServer, **env: str) -> LaminaServer:
    """A server reaching the moto peer, with FAST delivery intervals."""
    return LaminaServer(data_dir, env={**moto.env, **FAST, **env}).start()


def send(client: Any, name: str, payload: Any = None, **kwargs: Any) -> str:
    """Invoke asynchronously; returns the request id after checking the 202."""
    body = b"" if payload is None else json.dumps(payload).encode()
    response = client.invoke(FunctionName=name, InvocationType="Event", Payload=body, **kwargs)
    assert response["StatusCode"] == 202
    assert response["Payload"].read() == b""
    return str(response["ResponseMetadata"]["RequestId"])


def lamina_events(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`lamina events ARGS` on a data directory, as a user runs it (never raising)."""
    return run_lamina("events", *args, "--data-dir", str(data_dir))


def events_shown(data_dir: Path, name: str) -> dict[str, Any]:
    """What `lamina events NAME --json` shows: {"Functions": {name: counts}, "Events": [...]}."""
    result = lamina_events(data_dir, name, "--json")
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def wait_for_events(
    data_dir: Path, name: str, timeout: float = 60, **states: int
) -> dict[str, Any]:
    """Poll `lamina events` until the function's counts include `states`; its last answer."""
    last: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        last["answer"] = events_shown(data_dir, name)
        counts = last["answer"]["Functions"].get(name, {})
        done = all(counts.get(state) == count for state, count in states.items())
        return last["answer"] if done else None

    return wait_until(
        reached,
        timeout=timeout,
        interval=0.2,
        message=lambda: f"{name} never reached {states}: {last['answer']['Functions']}",
    )


@pytest.fixture(scope="module")
def async_server(moto: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server = start_server(tmp_path_factory.mktemp("async") / "data", moto)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(async_server: LaminaServer) -> Iterator[Any]:
    lambda_client = async_server.client()
    yield lambda_client
    lambda_client.close()


@pytest.fixture
def queue(sqs: Any) -> Callable[[], Queue]:
    return lambda: Queue(sqs)


@pytest.fixture
def function(client: Any) -> Callable[..., str]:
    """Create a function from HANDLERS; `destinations` / `invoke_config` set its async config."""

    def make(
        handler: str = "echo",
        on_success: str | None = None,
        on_failure: str | None = None,
        invoke_config: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> str:
        name = f"fn-{uuid.uuid4().hex[:12]}"
        client.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=ROLE,
            Handler=f"app.{handler}",
            Code={"ZipFile": make_zip({"app.py": HANDLERS})},
            **overrides,
        )
        config = dict(invoke_config or {})
        destinations = {}
        if on_success:
            destinations["OnSuccess"] = {"Destination": on_success}
        if on_failure:
            destinations["OnFailure"] = {"Destination": on_failure}
        if destinations:
            config["DestinationConfig"] = destinations
        if config:
            client.put_function_event_invoke_config(FunctionName=name, **config)
        return name

    return make
