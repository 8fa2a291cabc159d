"""InvokeMode RESPONSE_STREAM: the body reaches the client while the function still runs.

To prove a chunk arrived before the function finished, without timing anything, the function
stops after its first chunk until the test lets it go on: it connects to a socket the test
listens on and waits for a byte, which the test sends only once it holds the first chunk.
(Functions share the host network here, so they can reach 127.0.0.1.) Were the body
buffered, the first chunk could never arrive and the test would fail on its timeouts.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from lamina.runtimes.registry import RuntimeRegistry
from tests.support import netns
from tests.support.archives import make_zip
from tests.support.function_urls import allow_public, url_id
from tests.support.reachable import elsewhere, listen_in
from tests.support.server import LaminaServer, server_log

PYTHON = """
import json, socket

def wait_for_gate(event):
    query = event["queryStringParameters"]
    with socket.create_connection((query["host"], int(query["gate"])), timeout=50) as gate:
        gate.recv(1)

def gated(event, context):
    yield "first,"
    wait_for_gate(event)
    yield "second"

def with_prelude(event, context):
    head = {"statusCode": 202, "headers": {"Content-Type": "text/plain", "X-Streamed": "yes"},
            "cookies": ["s=1"]}
    yield json.dumps(head)
    yield b"\\0" * 8
    yield "first,"
    wait_for_gate(event)
    yield "second"

def bad_prelude(event, context):
    yield json.dumps({"statusCode": "teapot"})
    yield b"\\0" * 8
    yield "body"

def many(event, context):
    return ("%d," % i for i in range(300))

def json_lines(event, context):
    yield {"line": 1}
    yield "\\n"
    yield {"line": 2}

def fails_first(event, context):
    raise ValueError("nothing streamed")
    yield "never"

def fails_midway(event, context):
    yield "partial"
    raise RuntimeError("broke after one chunk")

def buffered(event, context):
    return {"statusCode": 201, "body": "not mapped in RESPONSE_STREAM mode"}
"""

NODE = """
const net = require('node:net');

const waitForGate = (event) => new Promise((resolve, reject) => {
  const query = event.queryStringParameters;
  const socket = net.connect(Number(query.gate), query.host);
  socket.once('data', () => { socket.destroy(); resolve(); });
  socket.once('error', reject);
});

exports.gated = awslambda.streamifyResponse(async (event, responseStream) => {
  const stream = awslambda.HttpResponseStream.from(responseStream, {
    statusCode: 201,
    headers: { 'content-type': 'text/plain', 'x-node': 'yes' },
    cookies: ['n=1', 'm=2'],
  });
  stream.write('first,');
  await waitForGate(event);
  stream.end('second');
});

exports.plain = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write('a,');
  responseStream.end('b');
});
"""

_REGISTRY = RuntimeRegistry()
NODE_RUNTIME = next(
    (name for name in ("nodejs20.x", "nodejs22.x", "nodejs18.x") if _REGISTRY.interpreter(name)),
    None,
)
needs_node = pytest.mark.skipif(NODE_RUNTIME is None, reason="no Node.js 18, 20 or 22 here")


@pytest.fixture
def streaming_url(lambda_client: Any, create_function: Callable[..., Any]) -> Callable[..., str]:
    def make(handler: str, runtime: str = "python3.12") -> str:
        files = {"app.py": PYTHON} if runtime.startswith("python") else {"app.js": NODE}
        name = create_function(
            Runtime=runtime,
            Handler=f"app.{handler}",
            Code={"ZipFile": make_zip(files)},
            Timeout=60,
        )["FunctionName"]
        allow_public(lambda_client, name)
        config = lambda_client.create_function_url_config(
            FunctionName=name, AuthType="NONE", InvokeMode="RESPONSE_STREAM"
        )
        return str(config["FunctionUrl"])

    return make


@pytest.fixture(scope="module")
def remote() -> Iterator[netns.Host]:
    """Another machine for the gates: functions do not reach the host's own addresses."""
    with elsewhere() as host:
        yield host


@contextmanager
def gate(host: netns.Host) -> Iterator[socket.socket]:
    with listen_in(host) as listener:
        listener.settimeout(60)
        yield listener


def through(listener: socket.socket) -> str:
    """The query telling a gated function where its gate is."""
    address, port = listener.getsockname()[:2]
    return f"?gate={port}&host={address}"


def open_gate(listener: socket.socket) -> None:
    peer, _ = listener.accept()
    with peer:
        peer.sendall(b"go")


@contextmanager
def stream(server: LaminaServer, function_url: str, query: str = "") -> Iterator[Any]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request("GET", f"/lambda-url/{url_id(function_url)}/{query}")
        yield connection.getresponse()
    finally:
        connection.close()


def read_at_least(response: http.client.HTTPResponse, size: int) -> bytes:
    """What has arrived so far, once it is `size` bytes (read1 never waits for more)."""
    data = b""
    while len(data) < size:
        piece = response.read1(65536)
        if not piece:
            break
        data += piece
    return data


def test_python_chunks_arrive_before_the_function_finishes(
    server: LaminaServer, streaming_url: Callable[..., str], remote: netns.Host
) -> None:
    function_url = streaming_url("gated")
    with (
        gate(remote) as listener,
        stream(server, function_url, through(listener)) as response,
    ):
        assert response.status == 200
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.headers["x-amzn-RequestId"]
        assert response.headers["x-amzn-Trace-Id"].startswith("Root=1-")
        assert read_at_least(response, 6) == b"first,"
        # The function is still running: it cannot go on until the gate opens.
        open_gate(listener)
        assert response.read() == b"second"


def test_a_prelude_sets_status_headers_and_cookies(
    server: LaminaServer, streaming_url: Callable[..., str], remote: netns.Host
) -> None:
    function_url = streaming_url("with_prelude")
    with (
        gate(remote) as listener,
        stream(server, function_url, through(listener)) as response,
    ):
        assert response.status == 202
        assert response.headers["content-type"] == "text/plain"
        assert response.headers["x-streamed"] == "yes"
        assert response.headers.get_all("set-cookie") == ["s=1"]
        assert read_at_least(response, 6) == b"first,"
        open_gate(listener)
        assert response.read() == b"second"


def test_many_chunks_arrive_complete_and_in_order(
    server: LaminaServer, streaming_url: Callable[..., str]
) -> None:
    function_url = streaming_url("many")
    for _ in range(2):  # the second call runs in the warm environment
        with stream(server, function_url) as response:
            assert response.read() == "".join(f"{i}," for i in range(300)).encode()


def test_json_objects_without_the_separator_are_body(
    server: LaminaServer, streaming_url: Callable[..., str]
) -> None:
    with stream(server, streaming_url("json_lines")) as response:
        assert response.status == 200
        assert response.read() == b'{"line":1}\n{"line":2}'


def test_an_invalid_prelude_is_502_and_logged(
    server: LaminaServer, streaming_url: Callable[..., str]
) -> None:
    with stream(server, streaming_url("bad_prelude")) as response:
        assert response.status == 502
        assert json.loads(response.read()) == {"Message": "Internal Server Error"}
        request_id = response.headers["x-amzn-RequestId"]
    assert (
        f"request {request_id}: 502: the stream's prelude is invalid: the stream's prelude has "
        "'statusCode' 'teapot', not an integer from 100 to 599"
    ) in server_log(server)


def test_a_failure_before_the_first_byte_is_502(
    server: LaminaServer, streaming_url: Callable[..., str]
) -> None:
    with stream(server, streaming_url("fails_first")) as response:
        assert response.status == 502
        assert json.loads(response.read()) == {"Message": "Internal Server Error"}
        request_id = response.headers["x-amzn-RequestId"]
    assert f"request {request_id}: 502: the function failed: ValueError: nothing streamed" in (
        server_log(server)
    )


def test_a_failure_midway_cuts_the_response_short(
    server: LaminaServer, streaming_url: Callable[..., str]
) -> None:
    with stream(server, streaming_url("fails_midway")) as response:
        assert response.status == 200
        with pytest.raises(http.client.IncompleteRead) as excinfo:
            response.read()
        assert excinfo.value.partial == b"partial"
        request_id = response.headers["x-amzn-RequestId"]
    assert (
        f"request {request_id}: the function failed mid-stream, so the response is cut short: "
        "RuntimeError: broke after one chunk"
    ) in server_log(server)


def test_a_function_that_does_not_stream_is_sent_as_it_answered(
    server: LaminaServer, streaming_url: Callable[..., str]
) -> None:
    with stream(server, streaming_url("buffered")) as response:
        assert response.status == 200
        assert response.headers["content-type"] == "application/json"
        assert json.loads(response.read()) == {
            "statusCode": 201,
            "body": "not mapped in RESPONSE_STREAM mode",
        }


@needs_node
def test_node_http_response_stream_streams_with_its_prelude(
    server: LaminaServer, streaming_url: Callable[..., str], remote: netns.Host
) -> None:
    assert NODE_RUNTIME is not None
    function_url = streaming_url("gated", NODE_RUNTIME)
    with (
        gate(remote) as listener,
        stream(server, function_url, through(listener)) as response,
    ):
        assert response.status == 201
        assert response.headers["content-type"] == "text/plain"
        assert response.headers["x-node"] == "yes"
        assert response.headers.get_all("set-cookie") == ["n=1", "m=2"]
        assert read_at_least(response, 6) == b"first,"
        open_gate(listener)
        assert response.read() == b"second"


@needs_node
def test_node_streams_without_a_prelude_are_the_body(
    server: LaminaServer, streaming_url: Callable[..., str]
) -> None:
    assert NODE_RUNTIME is not None
    with stream(server, streaming_url("plain", NODE_RUNTIME)) as response:
        assert response.status == 200
        assert response.read() == b"a,b"
