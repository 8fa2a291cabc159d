"""The Runtime API floor (`bench/suite/floor/runtime_api_server.py`) relays what Lamina's
own runtimes answer: the figures `bench.runtime_api_floor` prints stand on it."""

from __future__ import annotations

import http.client
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.runtime_api_floor import BOOTSTRAPS
from bench.suite.peers import interpreter
from bench.suite.targets.floor import floor_server

HANDLER = """
def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"echo": event, "function": context.invoked_function_arn}
"""


# A runtime that waits for each 202 before it asks for the next event (Lamina's own
# runtimes send their answer and their next `next` in one write).
PATIENT_RUNTIME = """
import http.client, json, os
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
api = http.client.HTTPConnection(host, int(port))
while True:
    api.request("GET", "/2018-06-01/runtime/invocation/next")
    event = api.getresponse()
    request_id = event.getheader("Lambda-Runtime-Aws-Request-Id")
    answer = json.dumps({"patient": json.loads(event.read())}).encode()
    api.request("POST", f"/2018-06-01/runtime/invocation/{request_id}/response", answer)
    reply = api.getresponse()
    assert reply.status == 202, reply.status
    reply.read()
"""


@pytest.fixture
def floor(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "index.py").write_text(HANDLER)
    (tmp_path / "patient.py").write_text(PATIENT_RUNTIME)
    config = {
        "echo": {
            "argv": [interpreter("python3.12"), str(BOOTSTRAPS["python"])],
            "env": {"LAMBDA_TASK_ROOT": str(tmp_path), "_HANDLER": "index.handler"},
        },
        "patient": {"argv": [sys.executable, str(tmp_path / "patient.py")], "env": {}},
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


def test_requests_pipelined_on_one_connection_are_answered_in_order(floor: int) -> None:
    requests = b"".join(
        b"POST /2015-03-31/functions/echo/invocations HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        for body in (b'{"n":1}', b'{"n":2}', b'{"n":3}')
    )
    with socket.create_connection(("127.0.0.1", floor), timeout=30) as connection:
        connection.sendall(requests)
        answers = connection.makefile("rb")
        for number in (1, 2, 3):
            status_line = answers.readline()
            headers = {}
            while (line := answers.readline()) != b"\r\n":
                name, _, value = line.decode().partition(":")
                headers[name.lower()] = value.strip()
            body = answers.read(int(headers["content-length"]))
            assert status_line.startswith(b"HTTP/1.1 200")
            assert json.loads(body)["echo"] == {"n": number}


def test_a_runtime_that_waits_for_each_202_is_served_too(floor: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", floor, timeout=30)
    for number in range(3):
        status, error, body = post(
            connection, "/2015-03-31/functions/patient/invocations", b'{"n":%d}' % number
        )
        assert (status, error, json.loads(body)) == (200, "", {"patient": {"n": number}})
    connection.close()
