"""The Node runtime answers an event and asks for the next one without waiting in between.

First against a scripted Runtime API (a socket that holds each 202 until the runtime's next
GET /next has arrived, so a runtime that waited for it would hang), then through the real
server: outcomes of every kind, one after the other, on one warm environment.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.archives import make_zip
from tests.support.lambda_api import call
from tests.support.node import NODE_RUNTIME, REGISTRY, needs_node

RUNTIME = NODE_RUNTIME
pytestmark = needs_node

HANDLERS = """
exports.handler = async (event) => {
  if (event.fail) throw new RangeError(event.fail);
  return { echo: event.n, pid: process.pid };
};

exports.stream = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write('one ');
  responseStream.write('');
  responseStream.end('two');
});

exports.echo = async (event) => event;

exports.callback = (event, context, callback) => {
  setTimeout(() => callback(null, { late: event.n, pid: process.pid }), 5);
};
"""


class ScriptedRuntimeApi:
    """Reads the runtime's requests one by one from a single connection; replies on demand."""

    def __init__(self, connection: socket.socket) -> None:
        self._connection = connection
        self._buffer = b""

    def request(self) -> tuple[str, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self._buffer:
            self._receive()
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            self._receive()
            rest = self._buffer.partition(b"\r\n\r\n")[2]
        self._buffer = rest[length:]
        return lines[0], headers, rest[:length]

    def _receive(self) -> None:
        data = self._connection.recv(65536)
        if not data:
            raise ConnectionError("the runtime closed its connection")
        self._buffer += data

    def send(self, *replies: bytes) -> None:
        self._connection.sendall(b"".join(replies))


def event(request_id: str, payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload).encode()
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nLambda-Runtime-Aws-Request-Id: %s\r\n"
        b"Lambda-Runtime-Deadline-Ms: 99999999999999\r\n"
        b"Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:000000000000:function:f"
        b"\r\n\r\n%s" % (len(body), request_id.encode(), body)
    )


ACCEPTED = (
    b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n"
    b'{"status":"OK"}'
)


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[ScriptedRuntimeApi]:
    assert RUNTIME is not None
    (tmp_path / "index.js").write_text(HANDLERS)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(20)
    port = listener.getsockname()[1]
    command = REGISTRY.command(RUNTIME, tmp_path, None, 128)
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "LAMBDA_TASK_ROOT": str(tmp_path),
        "_HANDLER": "index.handler",
    }
    process = subprocess.Popen(
        command.argv, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        connection, _ = listener.accept()
        connection.settimeout(20)
        with connection:
            yield ScriptedRuntimeApi(connection)
    finally:
        process.kill()
        process.wait()
        listener.close()


def test_the_answer_and_the_next_request_come_without_waiting_for_the_202(
    scripted: ScriptedRuntimeApi,
) -> None:
    line, _, _ = scripted.request()
    assert line == "GET /2018-06-01/runtime/invocation/next HTTP/1.1"
    scripted.send(event("first", {"n": 1}))
    line, headers, body = scripted.request()
    assert line == "POST /2018-06-01/runtime/invocation/first/response HTTP/1.1"
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["echo"] == 1
    # No 202 yet: the runtime must ask for its next event regardless.
    line, _, _ = scripted.request()
    assert line == "GET /2018-06-01/runtime/invocation/next HTTP/1.1"
    scripted.send(ACCEPTED, event("second", {"fail": "too far"}))
    # An invocation's error travels the same way, with the error type in its header.
    line, headers, body = scripted.request()
    assert line == "POST /2018-06-01/runtime/invocation/second/error HTTP/1.1"
    assert headers["lambda-runtime-function-error-type"] == "RangeError"
    error = json.loads(body)
    assert error["errorType"] == "RangeError"
    assert error["errorMessage"] == "too far"
    assert error["trace"][0] == "RangeError: too far"
    line, _, _ = scripted.request()
    assert line == "GET /2018-06-01/runtime/invocation/next HTTP/1.1"
    scripted.send(ACCEPTED, event("third", {"n": 3}))
    line, _, body = scripted.request()
    assert line == "POST /2018-06-01/runtime/invocation/third/response HTTP/1.1"
    assert json.loads(body)["echo"] == 3


@pytest.fixture
def node_function(create_function: Callable[..., Any]) -> Callable[[str], str]:
    def make(handler: str) -> str:
        config = create_function(
            Runtime=RUNTIME, Handler=handler, Code={"ZipFile": make_zip({"index.js": HANDLERS})}
        )
        return str(config["FunctionName"])

    return make


def test_outcomes_of_every_kind_follow_each_other_on_one_environment(
    lambda_client: Any, node_function: Callable[[str], str]
) -> None:
    name = node_function("index.handler")
    pids = set()
    for n in range(30):
        if n % 3 == 1:
            response, result = call(lambda_client, name, {"fail": f"number {n}"})
            assert response["FunctionError"] == "Unhandled"
            assert (result["errorType"], result["errorMessage"]) == ("RangeError", f"number {n}")
        else:
            response, result = call(lambda_client, name, {"n": n})
            assert "FunctionError" not in response
            assert result["echo"] == n
            pids.add(result["pid"])
    assert len(pids) == 1


def test_callbacks_and_streams_keep_their_order(
    lambda_client: Any, node_function: Callable[[str], str]
) -> None:
    waiting = node_function("index.callback")
    for n in range(10):
        assert call(lambda_client, waiting, {"n": n})[1]["late"] == n
    streaming = node_function("index.stream")
    for _ in range(10):
        response = lambda_client.invoke_with_response_stream(FunctionName=streaming, Payload=b"{}")
        chunks = [
            part["PayloadChunk"]["Payload"]
            for part in response["EventStream"]
            if "PayloadChunk" in part
        ]
        assert b"".join(chunks) == b"one two"


def test_large_events_and_answers_arrive_whole(
    lambda_client: Any, node_function: Callable[[str], str]
) -> None:
    name = node_function("index.echo")
    for size in (100_000, 5_000_000):
        event = {"data": "x" * size, "tail": "end"}
        response, result = call(lambda_client, name, event)
        assert "FunctionError" not in response
        assert result == event
