"""The Runtime API floor (`bench/suite/floor/runtime_api_server.py`) relays what Lamina's
own runtimes answer: the figures `bench.runtime_api_floor` prints stand on it."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.runtime_api_floor import BOOTSTRAPS, floor_server
from bench.suite.peers import interpreter

HANDLER = """
def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"echo": event, "function": context.invoked_function_arn}
"""


@pytest.fixture
def floor(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "index.py").write_text(HANDLER)
    config = {
        "echo": {
            "argv": [interpreter("python3.12"), str(BOOTSTRAPS["python"])],
            "env": {"LAMBDA_TASK_ROOT": str(tmp_path), "_HANDLER": "index.handler"},
        }
    }
    with floor_server("runtime_api_server.py", config) as (port, _):
        yield port


def post(connection: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, str, bytes]:
    connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, response.getheader("X-Amz-Function-Error") or "", response.read()


def test_calls_on_one_connection_each_get_their_own_answer(floor: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", floor, timeout=30)
    for number in range(5):
        status, error, body = post(
            connection, "/2015-03-31/functions/echo/invocations", json.dumps({"n": number}).encode()
        )
        assert (status, error) == (200, "")
        assert json.loads(body) == {
            "echo": {"n": number},
            "function": "arn:aws:lambda:us-east-1:000000000000:function:echo",
        }
    connection.close()


def test_a_handler_error_is_relayed_as_unhandled_and_the_runtime_serves_on(floor: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", floor, timeout=30)
    status, error, body = post(connection, "/2015-03-31/functions/echo/invocations", b'{"fail":1}')
    assert (status, error) == (200, "Unhandled")
    assert json.loads(body)["errorMessage"] == "asked to fail"
    status, error, body = post(connection, "/2015-03-31/functions/echo/invocations", b'{"n":1}')
    assert (status, error, json.loads(body)["echo"]) == (200, "", {"n": 1})
    connection.close()


def test_concurrent_calls_get_a_runtime_each(floor: int) -> None:
    first = http.client.HTTPConnection("127.0.0.1", floor, timeout=30)
    second = http.client.HTTPConnection("127.0.0.1", floor, timeout=30)
    for connection in (first, second):
        connection.request("POST", "/2015-03-31/functions/echo/invocations", body=b'{"n":2}')
    for connection in (first, second):
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["echo"] == {"n": 2}
        connection.close()


def test_an_unknown_function_is_not_found(floor: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", floor, timeout=30)
    status, _, _ = post(connection, "/2015-03-31/functions/missing/invocations", b"{}")
    assert status == 404
    connection.close()
