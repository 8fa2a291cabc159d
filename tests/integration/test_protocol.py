"""Bad requests get AWS-shaped errors, never a 500 with a traceback."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from typing import Any

import botocore.session
import httpx
import pytest

from tests.support.server import LaminaServer

# Operations that answer ServiceException by design until an issue makes them real.
NOT_YET_SERVED: set[str] = set()
LABEL_VALUES = {
    "FunctionName": "sweep-missing",
    "Name": "live",
    "StatementId": "sid",
    "LayerName": "sweep-layer",
    "VersionNumber": "1",
    "CodeSigningConfigArn": (
        "arn:aws:lambda:us-east-1:000000000000:code-signing-config:csc-0123456789abcdefg"
    ),
    "Resource": "arn:aws:lambda:us-east-1:000000000000:function:sweep-missing",
    "UUID": "00000000-0000-0000-0000-000000000000",
}
BODIES = [b"", b"{}", b"not json", b"[1, 2]", b'{"MemorySize": "x", "Timeout": -1, "Tags": 5}']


@pytest.fixture(scope="module")
def http(server: LaminaServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.endpoint, timeout=30) as client:
        yield client


def operation_requests() -> list[tuple[str, str, str]]:
    model = botocore.session.get_session().get_service_model("lambda")
    requests = []
    for name in model.operation_names:
        http_spec = model.operation_model(name).http
        uri = re.sub(
            r"\{(\w+)\+?\}", lambda m: LABEL_VALUES.get(m.group(1), "x"), http_spec["requestUri"]
        )
        requests.append((name, http_spec["method"], uri))
    return requests


def assert_aws_error(response: httpx.Response) -> dict[str, Any]:
    assert response.headers.get("x-amzn-ErrorType"), response.text
    assert response.headers.get("x-amzn-RequestId")
    body: dict[str, Any] = response.json()
    assert body.get("message") or body.get("Message")
    assert "Traceback" not in response.text
    return body


@pytest.mark.parametrize(("operation", "method", "uri"), operation_requests())
def test_no_operation_answers_500_to_junk(
    http: httpx.Client, operation: str, method: str, uri: str
) -> None:
    if operation in NOT_YET_SERVED:
        pytest.skip("served by the execution engine")
    for body in BODIES:
        response = http.request(method, uri, content=body)
        assert response.status_code < 500, (operation, body, response.text)
        if response.status_code >= 400:
            assert_aws_error(response)


def test_malformed_json_is_invalid_request_content(http: httpx.Client) -> None:
    response = http.post("/2015-03-31/functions", content=b'{"FunctionName": ')
    assert response.status_code == 400
    assert response.headers["x-amzn-ErrorType"] == "InvalidRequestContentException"
    assert assert_aws_error(response)["Type"] == "User"


def test_wrong_json_types_are_refused(http: httpx.Client) -> None:
    response = http.post(
        "/2015-03-31/functions",
        json={"FunctionName": "typed", "MemorySize": "big", "Role": "r", "Code": {}},
    )
    assert response.status_code == 400
    assert "memorySize" in assert_aws_error(response)["message"]


def test_unknown_route_is_an_aws_error(http: httpx.Client) -> None:
    response = http.get("/2099-01-01/nothing-here")
    assert response.status_code == 404
    assert response.headers["x-amzn-ErrorType"] == "UnknownOperationException"


def test_wrong_method_is_an_aws_error(http: httpx.Client) -> None:
    response = http.patch("/2015-03-31/functions")
    assert response.status_code == 405
    assert_aws_error(response)


def test_oversized_body_is_refused_before_reading_it(server: LaminaServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /2015-03-31/functions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 900000000\r\n\r\n{"
        )
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413")
    assert "RequestEntityTooLargeException" in reply


def test_zip_over_50_mb_is_request_entity_too_large(http: httpx.Client) -> None:
    import base64
    import os

    oversized = base64.b64encode(os.urandom(50 * 1024 * 1024 + 1)).decode()
    response = http.post(
        "/2015-03-31/functions",
        json={
            "FunctionName": "too-big",
            "Runtime": "python3.12",
            "Role": "arn:aws:iam::000000000000:role/r",
            "Handler": "app.handler",
            "Code": {"ZipFile": oversized},
        },
    )
    assert response.status_code == 413
    assert response.headers["x-amzn-ErrorType"] == "RequestEntityTooLargeException"
    assert "52428800" in assert_aws_error(response)["message"]
