"""Redriving failed asynchronous events: one by id over `/_lamina/events/{fn}/redrive`, all of
them with `lamina events redrive --all`. A redriven event keeps its request id, runs again as
a new event (the function's current code, fresh retries) and leaves the queue when it
succeeds. Refusals have AWS's error shape; in enforced mode the endpoint needs a signature.
(Racing redrives: tests/contract/test_queue_redrive_contract.py, on SQLite and PostgreSQL.)"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.support.archives import make_zip
from tests.support.asynchronous import FAST, HANDLERS, events_shown, send, wait_for_events
from tests.support.lambda_api import ROLE
from tests.support.lamina_cli import run_lamina
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

KEY, SECRET = "AKIDREDRIVETEST", "redrive-secret-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    instance = LaminaServer(tmp_path_factory.mktemp("redrive") / "data", env=FAST).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def client(server: LaminaServer) -> Iterator[Any]:
    lambda_client = server.client()
    yield lambda_client
    lambda_client.close()


def post(
    server: LaminaServer, function: str, body: Any, sign: tuple[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """POST the redrive endpoint: status, JSON body, headers."""
    url = f"{server.endpoint}/_lamina/events/{function}/redrive"
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body
    headers = {"content-type": "application/json"}
    if sign is not None:
        signed = AWSRequest(method="POST", url=url, data=data, headers=headers)
        SigV4Auth(Credentials(*sign), "lambda", "us-east-1").add_auth(signed)
        headers = dict(signed.headers.items())
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return (
                reply.status,
                json.loads(reply.read()),
                {key.lower(): value for key, value in reply.headers.items()},
            )
    except urllib.error.HTTPError as error:
        with error:
            return (
                error.code,
                json.loads(error.read()),
                {key.lower(): value for key, value in error.headers.items()},
            )


def failing_function(client: Any) -> str:
    name = f"redrive-{uuid.uuid4().hex[:8]}"
    client.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.fail",
        Code={"ZipFile": make_zip({"app.py": HANDLERS})},
    )
    client.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    return name


def fixed(client: Any, name: str) -> None:
    """The fix is deployed: the function now succeeds."""
    client.update_function_configuration(FunctionName=name, Handler="app.ok")
    client.get_waiter("function_updated_v2").wait(FunctionName=name)


def starts_of(server: LaminaServer, function: str, request_id: str) -> int:
    logs = server.client("logs")
    try:
        found = logs.filter_log_events(
            logGroupName=f"/aws/lambda/{function}", filterPattern=f'"START RequestId: {request_id}"'
        )
    finally:
        logs.close()
    return len(found["events"])


def test_a_failed_event_redriven_by_id_runs_again_under_its_request_id(
    server: LaminaServer, client: Any
) -> None:
    name = failing_function(client)
    first, second = send(client, name, {"n": 1}), send(client, name, {"n": 2})
    wait_for_events(server.data_dir, name, failed=2)
    fixed(client, name)

    status, body, _ = post(server, name, {"RequestId": first})
    assert (status, body) == (200, {"FunctionName": name, "Redriven": [first]})
    answer = wait_for_events(server.data_dir, name, failed=1, queued=0, in_flight=0)
    assert [event["RequestId"] for event in answer["Events"]] == [second]
    # The same request id ran twice: once failing, once after the redrive.
    wait_until(lambda: starts_of(server, name, first) == 2, timeout=30)

    # Already redriven (and done): nothing failed by that id any more.
    status, body, headers = post(server, name, {"RequestId": first})
    assert status == 404
    assert headers["x-amzn-errortype"] == "ResourceNotFoundException"
    assert body["message"] == f"Function {name} has no failed asynchronous event {first}."


def test_the_cli_redrives_every_failed_event(server: LaminaServer, client: Any) -> None:
    name = failing_function(client)
    sent = sorted(send(client, name, {"n": number}) for number in range(3))
    wait_for_events(server.data_dir, name, failed=3)
    fixed(client, name)

    result = run_lamina("events", "redrive", name, "--all", "--data-dir", str(server.data_dir))
    assert result.returncode == 0, result.stderr
    assert [line.split()[1] for line in result.stdout.splitlines()[:3]] == sent
    assert f"3 failed event(s) of {name} back in the queue." in result.stdout
    wait_until(
        lambda: name not in events_shown(server.data_dir, name)["Functions"],
        timeout=30,
        message="the redriven events never succeeded",
    )
    for request_id in sent:
        wait_until(lambda request_id=request_id: starts_of(server, name, request_id) == 2)

    again = run_lamina("events", "redrive", name, "--all", "--data-dir", str(server.data_dir))
    assert again.returncode == 0 and "0 failed event(s)" in again.stdout
    one = run_lamina(
        "events", "redrive", name, "--id", "nope", "--json", "--data-dir", str(server.data_dir)
    )
    assert one.returncode == 1 and "has no failed asynchronous event nope" in one.stderr
    assert json.loads(one.stdout) == {"FunctionName": name, "Redriven": []}


def test_the_cli_asks_for_what_is_missing(server: LaminaServer) -> None:
    data_dir = str(server.data_dir)
    result = run_lamina("events", "redrive", "f", "--data-dir", data_dir)
    assert result.returncode == 2 and "--id REQUEST_ID or --all" in result.stderr
    # `lamina events NAME` still lists, even for a function named `redrive`.
    listing = run_lamina("events", "redrive", "--data-dir", data_dir)
    assert listing.returncode == 0 and "No asynchronous events for redrive." in listing.stdout


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "InvalidParameterValueException"),
        ({"RequestId": "x", "All": True}, 400, "InvalidParameterValueException"),
        ({"RequestId": 7}, 400, "InvalidParameterValueException"),
        (b"{nope", 400, "InvalidRequestContentException"),
        ({"All": True}, 200, None),
    ],
)
def test_the_endpoint_checks_its_body(
    server: LaminaServer, body: Any, status: int, code: str | None
) -> None:
    got, answer, headers = post(server, "no-such-function", body)
    assert got == status, answer
    if code is None:
        assert answer == {"FunctionName": "no-such-function", "Redriven": []}
    else:
        assert headers["x-amzn-errortype"] == code and answer["message"]


def test_enforced_mode_needs_a_signature(tmp_path: Path) -> None:
    secured = LaminaServer(
        tmp_path / "data", env={"LAMINA_ACCESS_KEY_ID": KEY, "LAMINA_SECRET_ACCESS_KEY": SECRET}
    ).start()
    try:
        status, _, _ = post(secured, "f", {"All": True})
        assert status == 403
        status, _, _ = post(secured, "f", {"All": True}, sign=("AKIDSTRANGER", "nope"))
        assert status == 403
        status, body, _ = post(secured, "f", {"All": True}, sign=(KEY, SECRET))
        assert (status, body) == (200, {"FunctionName": "f", "Redriven": []})
    finally:
        secured.stop()


def test_two_redrives_at_once_move_each_event_once(server: LaminaServer, client: Any) -> None:
    name = failing_function(client)
    sent = sorted(send(client, name, {"n": number}) for number in range(4))
    wait_for_events(server.data_dir, name, failed=4)
    fixed(client, name)
    answers: list[list[str]] = []

    def redrive_all() -> None:
        status, body, _ = post(server, name, {"All": True})
        assert status == 200
        answers.append(body["Redriven"])

    racers = [threading.Thread(target=redrive_all) for _ in range(2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert sorted(answers[0] + answers[1]) == sent
    wait_until(lambda: name not in events_shown(server.data_dir, name)["Functions"], timeout=30)
    for request_id in sent:
        wait_until(lambda request_id=request_id: starts_of(server, name, request_id) == 2)
