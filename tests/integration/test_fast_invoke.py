"""Invoke's fast path answers exactly as the generic pipeline does.

Two servers with the same functions, one with the fast path (the default) and one without
(`LAMINA_FAST_INVOKE=0`), get the same raw HTTP requests; their responses must be the same
bytes, but for what differs by nature (the date, request ids, durations in log tails).
The cases cover what the fast path serves itself (results, function errors, qualifiers,
ARNs, errors and refusals, validation, throttling) and what it hands over (other invocation
types, unknown members, chunked bodies, HTTP/1.0), on one keep-alive connection too.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.support.archives import make_zip
from tests.support.iam import client as signed_client
from tests.support.iam import enforced_env, ensure_lambda_role
from tests.support.lambda_api import ROLE
from tests.support.server import LaminaServer

HANDLERS = """
def echo(event, context):
    return event

def fail(event, context):
    print("about to fail")
    raise ValueError("something broke")
"""
INVOCATIONS = "/2015-03-31/functions/{}/invocations"
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_NUMBER = re.compile(rb"\d+(\.\d+)?")
KEY, SECRET = "AKIAFASTPATHROOT", "fast-path-root-secret"
Response = tuple[int, list[tuple[str, str]], bytes]


def _set_up(server: LaminaServer, client: Any) -> None:
    for name, handler in (("echo", "app.echo"), ("fail", "app.fail"), ("capped", "app.echo")):
        client.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=ROLE,
            Handler=handler,
            Code={"ZipFile": make_zip({"app.py": HANDLERS})},
        )
    client.get_waiter("function_active_v2").wait(FunctionName="echo")
    version = client.publish_version(FunctionName="echo")["Version"]
    client.create_alias(FunctionName="echo", Name="live", FunctionVersion=version)
    client.put_function_concurrency(FunctionName="capped", ReservedConcurrentExecutions=0)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LaminaServer, ...]]:
    started = []
    for fast in ("1", "0"):
        data = tmp_path_factory.mktemp(f"fast-{fast}") / "data"
        server = LaminaServer(data, env={"LAMINA_FAST_INVOKE": fast}).start()
        started.append(server)
        _set_up(server, server.client("lambda"))
    yield tuple(started)
    for server in started:
        server.stop()


def _normal(response: http.client.HTTPResponse) -> Response:
    """Status, headers and body, with what differs between any two calls made uniform."""
    headers = []
    for name, value in response.getheaders():
        if name == "date":
            continue
        shown = value
        if name == "x-amzn-requestid" and _UUID.fullmatch(value.encode()):
            shown = "<request id>"
        elif name == "x-amz-log-result":
            shown = _NUMBER.sub(b"<n>", _UUID.sub(b"<id>", base64.b64decode(value))).decode()
        headers.append((name, shown))
    body = _UUID.sub(b"<id>", response.read())
    return response.status, headers, body


def _send(
    connection: http.client.HTTPConnection,
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes,
) -> Response:
    connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.endheaders(body)
    return _normal(connection.getresponse())


def _exchange(
    server: LaminaServer, requests: list[tuple[str, str, dict[str, str], bytes]]
) -> list[Response]:
    """Each request in turn on one keep-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        return [
            _send(
                connection,
                method,
                target,
                {"Host": f"127.0.0.1:{server.port}", "Content-Length": str(len(body)), **headers},
                body,
            )
            for method, target, headers, body in requests
        ]
    finally:
        connection.close()


def _post(
    target: str, body: bytes = b"{}", **headers: str
) -> tuple[str, str, dict[str, str], bytes]:
    return (
        "POST",
        target,
        {name.replace("_", "-"): value for name, value in headers.items()},
        body,
    )


def _context(document: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


CASES = [
    _post(INVOCATIONS.format("echo"), b'{"hello": "world"}'),
    _post(INVOCATIONS.format("echo"), b""),
    _post(INVOCATIONS.format("echo"), b"  "),
    _post(INVOCATIONS.format("echo"), b"[1, 2"),
    _post(INVOCATIONS.format("echo"), b'"just a string"'),
    _post(INVOCATIONS.format("echo") + "?Qualifier=%24LATEST"),
    _post(INVOCATIONS.format("echo") + "?Qualifier=1"),
    _post(INVOCATIONS.format("echo") + "?Qualifier=live"),
    _post(INVOCATIONS.format("echo") + "?Qualifier=missing"),
    _post(INVOCATIONS.format("echo") + "?Qualifier="),
    _post(INVOCATIONS.format("echo") + "?Qualifier=bad%20qualifier"),
    _post(INVOCATIONS.format("echo:live")),
    _post(INVOCATIONS.format("echo:live") + "?Qualifier=1"),
    _post(INVOCATIONS.format("arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Aecho")),
    _post(INVOCATIONS.format("000000000000%3Afunction%3Aecho")),
    _post(INVOCATIONS.format("arn%3Aaws%3Alambda%3Aeu-west-1%3A000000000000%3Afunction%3Aecho")),
    _post(INVOCATIONS.format("nope")),
    _post(INVOCATIONS.format("x" * 300)),
    _post(INVOCATIONS.format("bad%20name")),
    _post(INVOCATIONS.format("fail")),
    _post(INVOCATIONS.format("fail"), X_Amz_Log_Type="Tail"),
    _post(INVOCATIONS.format("echo"), X_Amz_Log_Type="Tail"),
    _post(INVOCATIONS.format("echo"), X_Amz_Log_Type="Bogus"),
    _post(INVOCATIONS.format("echo"), X_Amz_Invocation_Type="RequestResponse"),
    _post(INVOCATIONS.format("echo"), X_Amz_Invocation_Type="DryRun"),
    _post(INVOCATIONS.format("echo"), X_Amz_Invocation_Type="Sideways"),
    _post(INVOCATIONS.format("echo"), X_Amz_Client_Context=_context({"custom": {"a": 1}})),
    _post(INVOCATIONS.format("echo"), X_Amz_Client_Context="not base64 at all!"),
    _post(INVOCATIONS.format("echo"), X_Amz_Tenant_Id="tenant-1"),
    _post(INVOCATIONS.format("echo"), X_Amzn_Trace_Id="Root=1-5759e988-bd862e3fe1be46a994272793"),
    _post(INVOCATIONS.format("echo") + "?Other=1"),
    _post(INVOCATIONS.format("capped")),
    _post(INVOCATIONS.format("echo") + "/"),
    ("GET", INVOCATIONS.format("echo"), {}, b""),
]


def test_the_fast_path_answers_as_the_generic_pipeline(servers: tuple[LaminaServer, ...]) -> None:
    fast, generic = (_exchange(server, CASES) for server in servers)
    for request, fast_answer, generic_answer in zip(CASES, fast, generic, strict=True):
        assert fast_answer == generic_answer, request
    # The cases exercised what they were meant to: a result, a function error, a refusal.
    statuses = {status for status, _, _ in fast}
    assert {200, 400, 404, 429} <= statuses
    assert any(("x-amz-function-error", "Unhandled") in headers for _, headers, _ in fast)


def test_every_call_on_one_connection_gets_its_own_answer_in_order(
    servers: tuple[LaminaServer, ...],
) -> None:
    """Requests written back to back (HTTP pipelining), fast and generic mixed."""
    fast_server = servers[0]
    requests = b"".join(
        f"POST {INVOCATIONS.format('echo')} HTTP/1.1\r\nHost: x\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
        if kind == "fast"
        else b"GET /2015-03-31/functions/echo HTTP/1.1\r\nHost: x\r\n\r\n"
        for kind, body in [
            ("fast", b'{"n": 1}'),
            ("fast", b'{"n": 2}'),
            ("generic", b""),
            ("fast", b'{"n": 3}'),
        ]
    )
    with socket.create_connection(("127.0.0.1", fast_server.port), timeout=30) as sock:
        sock.sendall(requests)
        reader = sock.makefile("rb")
        answers = [_read_response(reader) for _ in range(4)]
    assert [status for status, _ in answers] == [200, 200, 200, 200]
    assert [json.loads(answers[i][1]) for i in (0, 1, 3)] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert json.loads(answers[2][1])["Configuration"]["FunctionName"] == "echo"


def test_an_answer_written_first_is_logged_and_released_before_the_next_request(
    servers: tuple[LaminaServer, ...],
) -> None:
    """The fast path writes its answer before the invocation's END and REPORT and the release
    of its environment and concurrency: those still come before anything a request sent
    after the answer does, on the same connection or another one, or a read of the logs."""
    fast_server = servers[0]
    client = fast_server.client("lambda")
    client.create_function(
        FunctionName="solo",
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.fail",
        Code={"ZipFile": make_zip({"app.py": HANDLERS})},
    )
    client.get_waiter("function_active_v2").wait(FunctionName="solo")
    client.put_function_concurrency(FunctionName="solo", ReservedConcurrentExecutions=1)
    logs = fast_server.client("logs")
    request = (
        f"POST {INVOCATIONS.format('solo')} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}"
    ).encode()
    connections = [
        socket.create_connection(("127.0.0.1", fast_server.port), timeout=30) for _ in range(2)
    ]
    readers = [connection.makefile("rb") for connection in connections]
    try:
        for call in range(18):
            # The function's single slot is free again for the next call, whichever
            # connection it comes on: none is throttled.
            connections[call % 2].sendall(request)
            status, body = _read_response(readers[call % 2])
            assert status == 200, body
            assert json.loads(body)["errorType"] == "ValueError"
            events = logs.filter_log_events(logGroupName="/aws/lambda/solo")["events"]
            reports = [e for e in events if e["message"].startswith("REPORT")]
            assert len(reports) == call + 1
    finally:
        for connection in connections:
            connection.close()
    # Each call's lines in order: START, what it printed, END, REPORT.
    calls: list[list[str]] = []
    for event in events:
        word = event["message"].split(" ", 1)[0]
        if word == "START":
            calls.append([])
        elif not calls:
            continue  # the environment's INIT_START and its init's lines
        calls[-1].append(word if word in {"START", "END", "REPORT"} else event["message"])
    assert len(calls) == 18
    for lines in calls:
        assert lines[0] == "START" and lines[-2:] == ["END", "REPORT"], lines
        assert lines[1] == "about to fail", lines
    assert len({e["logStreamName"] for e in events}) == 1  # one environment served them all


def _read_response(reader: Any) -> tuple[int, bytes]:
    """One response with a Content-Length off a stream: (status, body)."""
    status = int(reader.readline().split()[1])
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return status, reader.read(length)


def test_chunked_and_http_1_0_requests_are_answered_alike(
    servers: tuple[LaminaServer, ...],
) -> None:
    def raw(server: LaminaServer, request: bytes) -> Response:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(request)
            response = http.client.HTTPResponse(sock)
            response.begin()
            return _normal(response)

    path = INVOCATIONS.format("echo")
    chunked = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        '5\r\n{"a":\r\n2\r\n1}\r\n0\r\n\r\n'
    ).encode()
    old = f"POST {path} HTTP/1.0\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}".encode()
    for request in (chunked, old):
        fast, generic = (raw(server, request) for server in servers)
        assert fast == generic
        assert fast[0] == 200


@pytest.fixture(scope="module")
def enforced(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[tuple[LaminaServer, str, str]]]:
    """Fast and generic servers in enforced mode, each with a user allowed GetFunction only
    (its key and secret beside it)."""
    started = []
    for fast in ("1", "0"):
        data = tmp_path_factory.mktemp(f"enforced-{fast}") / "data"
        env = {**enforced_env(KEY, SECRET), "LAMINA_FAST_INVOKE": fast}
        server = LaminaServer(data, env=env).start()
        ensure_lambda_role(server, KEY, SECRET)
        _set_up(server, signed_client(server, "lambda", KEY, SECRET))
        iam = signed_client(server, "iam", KEY, SECRET)
        iam.create_user(UserName="reader")
        iam.put_user_policy(
            UserName="reader",
            PolicyName="get-only",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": "lambda:GetFunction", "Resource": "*"}
                    ],
                }
            ),
        )
        reader = iam.create_access_key(UserName="reader")["AccessKey"]
        started.append((server, reader["AccessKeyId"], reader["SecretAccessKey"]))
    yield started
    for server, _, _ in started:
        server.stop()


def _signed(
    server: LaminaServer, key: str, secret: str, body: bytes, service: str = "lambda"
) -> dict[str, str]:
    url = f"http://127.0.0.1:{server.port}{INVOCATIONS.format('echo')}"
    request = AWSRequest(method="POST", url=url, data=body)
    SigV4Auth(Credentials(key, secret), service, "us-east-1").add_auth(request)
    return dict(request.headers.items())


def test_enforced_mode_checks_and_refuses_alike(
    enforced: list[tuple[LaminaServer, str, str]],
) -> None:
    answers = []
    for server, reader_key, reader_secret in enforced:
        body = b'{"from": "a signed caller"}'
        requests = [
            _post(INVOCATIONS.format("echo"), body, **_named(_signed(server, KEY, SECRET, body))),
            _post(INVOCATIONS.format("echo"), body),
            _post(INVOCATIONS.format("echo"), body, **_named(_signed(server, KEY, "wrong", body))),
            _post(
                INVOCATIONS.format("echo"),
                body,
                **_named(_signed(server, "AKIAUNKNOWN", "x", body)),
            ),
            _post(
                INVOCATIONS.format("echo"),
                body,
                **_named(_signed(server, reader_key, reader_secret, body)),
            ),
            _post(INVOCATIONS.format("echo"), b"{}", **_named(_signed(server, KEY, SECRET, body))),
        ]
        answers.append(_exchange(server, requests))
    fast, generic = answers
    assert fast == generic
    assert [status for status, _, _ in fast] == [200, 403, 403, 403, 403, 403]
    refusal = json.loads(fast[4][2])
    assert refusal["Message"].startswith("User: arn:aws:iam::000000000000:user/reader is not")


def _named(headers: dict[str, str]) -> dict[str, str]:
    """Headers as `_post`'s keywords spell them."""
    return {name.replace("-", "_"): value for name, value in headers.items()}
