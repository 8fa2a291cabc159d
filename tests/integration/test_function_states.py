"""The function state machine over HTTP, as AWS shows it: Pending and InProgress while Lamina
activates a change (reads code from S3, unpacks code and layers), then Active and
Successful under a new RevisionId, or Failed with a reason code.

Slow activations are real ones: code read from an S3 endpoint (`S3Gate`, in front of the
moto server) that holds the read until the test lets it go.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, WaiterError

from tests.support.archives import make_zip
from tests.support.lambda_api import FUNCTION_ARN, ROLE, error_of, invoke
from tests.support.peers import MotoServer
from tests.support.s3_gate import Hold, S3Gate
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

CREATING_REASON = "The function is being created."
PENDING_REFUSAL = (
    "The operation cannot be performed at this time. "
    "The function is currently in the following state: Pending"
)
# AWS's words when an archive does not unpack (the trailing semicolon is theirs).
INVALID_ENTRIES = "Failed to unzip archive: Zip file contains invalid files/folders;"
STATE_KEYS = (
    "State",
    "StateReason",
    "StateReasonCode",
    "LastUpdateStatus",
    "LastUpdateStatusReason",
    "LastUpdateStatusReasonCode",
)
BUCKET = "lamina-states"


def returns(value: Any) -> str:
    return f"def handler(event, context):\n    return {value!r}\n"


def states_of(config: dict[str, Any]) -> dict[str, Any]:
    """The state machine's keys a FunctionConfiguration carries (absent ones left out)."""
    return {key: config[key] for key in STATE_KEYS if key in config}


def in_update_conflict(name: str) -> str:
    return (
        "The operation cannot be performed at this time. "
        f"An update is in progress for resource: {FUNCTION_ARN}:{name}"
    )


@pytest.fixture(scope="module")
def gate(moto: MotoServer) -> Iterator[S3Gate]:
    moto.client("s3").create_bucket(Bucket=BUCKET)
    instance = S3Gate(moto).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory, gate: S3Gate) -> Iterator[LaminaServer]:
    """A Lamina server that reads code from S3 through the gate."""
    server = LaminaServer(tmp_path_factory.mktemp("states") / "data", env=gate.env).start()
    yield server
    server.stop()


@pytest.fixture
def background(gate: S3Gate) -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    """Calls that block while the gate holds their S3 read (let go when the test ends, so a
    failed test does not leave them waiting)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        try:
            yield pool
        finally:
            gate.release_all()


def put_code(moto: MotoServer, key: str, source: str) -> None:
    moto.client("s3").put_object(Bucket=BUCKET, Key=key, Body=make_zip({"app.py": source}))


def held_create(
    pool: concurrent.futures.ThreadPoolExecutor, client: Any, name: str, key: str
) -> concurrent.futures.Future[dict[str, Any]]:
    return pool.submit(
        client.create_function,
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"S3Bucket": BUCKET, "S3Key": key},
    )


def reached(hold: Hold) -> None:
    assert hold.reached.wait(15), "Lamina never read the held S3 object"


# ------------------------------------------------------------------------ the sequence


def test_create_get_update_get_matches_the_shapes_recorded_on_aws(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    """Create → Get → Update → Get, key by key against what AWS answers."""
    created = create_function()
    name = created["FunctionName"]
    got = lambda_client.get_function(FunctionName=name)["Configuration"]
    updated = lambda_client.update_function_configuration(FunctionName=name, Timeout=9)
    got_again = lambda_client.get_function(FunctionName=name)["Configuration"]

    # CreateFunction: Pending, creating, and no LastUpdateStatus* keys at all.
    assert states_of(created) == {
        "State": "Pending",
        "StateReason": CREATING_REASON,
        "StateReasonCode": "Creating",
    }
    # GetFunction afterwards: Active and Successful, reasons gone.
    assert states_of(got) == {"State": "Active", "LastUpdateStatus": "Successful"}
    # UpdateFunctionConfiguration: still Active, the update InProgress in AWS's words.
    assert states_of(updated) == {
        "State": "Active",
        "LastUpdateStatus": "InProgress",
        "LastUpdateStatusReason": CREATING_REASON,
        "LastUpdateStatusReasonCode": "Creating",
    }
    assert states_of(got_again) == {"State": "Active", "LastUpdateStatus": "Successful"}
    # Each transition is a new revision: four answers, four RevisionIds.
    revisions = [config["RevisionId"] for config in (created, got, updated, got_again)]
    assert len(set(revisions)) == 4
    # Everything else is the configuration as set: same keys throughout, Timeout updated.
    others = [set(config) - {*STATE_KEYS, "ResponseMetadata"} for config in (created, got)]
    assert others[0] == others[1]
    assert (got["Timeout"], updated["Timeout"], got_again["Timeout"]) == (3, 9, 9)
    assert got_again["CodeSha256"] == created["CodeSha256"]


def test_update_code_is_in_progress_then_successful(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function(Code={"ZipFile": make_zip({"app.py": returns(1)})})["FunctionName"]
    before = lambda_client.get_function_configuration(FunctionName=name)
    updated = lambda_client.update_function_code(
        FunctionName=name, ZipFile=make_zip({"app.py": returns(2)})
    )
    assert states_of(updated) == {
        "State": "Active",
        "LastUpdateStatus": "InProgress",
        "LastUpdateStatusReason": CREATING_REASON,
        "LastUpdateStatusReasonCode": "Creating",
    }
    after = lambda_client.get_function_configuration(FunctionName=name)
    assert states_of(after) == {"State": "Active", "LastUpdateStatus": "Successful"}
    assert len({before["RevisionId"], updated["RevisionId"], after["RevisionId"]}) == 3
    assert after["CodeSha256"] == updated["CodeSha256"] != before["CodeSha256"]
    assert invoke(lambda_client, name) == 2


def test_the_list_shows_the_same_states(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function()["FunctionName"]
    listed = [
        config
        for page in lambda_client.get_paginator("list_functions").paginate()
        for config in page["Functions"]
        if config["FunctionName"] == name
    ]
    assert [states_of(config) for config in listed] == [
        {"State": "Active", "LastUpdateStatus": "Successful"}
    ]


# -------------------------------------------------------------------------- waiters


def test_waiters_return_at_once(lambda_client: Any, unique_name: Callable[[str], str]) -> None:
    """boto3's waiters poll every second (five for the v1 ones): each must be satisfied by
    its first call, so none ever sleeps."""
    name = unique_name("waited")

    calls: list[str] = []

    def count(model: Any, **_: Any) -> None:
        calls.append(model.name)

    lambda_client.meta.events.register("before-call.lambda", count)

    def calls_made(call: Callable[[], Any]) -> int:
        """How many API calls the waiter made: one means its first poll was satisfied."""
        calls.clear()
        call()
        return len(calls)

    lambda_client.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip()},
    )
    waits = {
        "function_exists": calls_made(
            lambda: lambda_client.get_waiter("function_exists").wait(FunctionName=name)
        ),
        "function_active_v2": calls_made(
            lambda: lambda_client.get_waiter("function_active_v2").wait(FunctionName=name)
        ),
        "function_active": calls_made(
            lambda: lambda_client.get_waiter("function_active").wait(FunctionName=name)
        ),
    }
    lambda_client.update_function_configuration(FunctionName=name, MemorySize=256)
    waits["function_updated_v2"] = calls_made(
        lambda: lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    )
    lambda_client.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": "x = 1"}))
    waits["function_updated"] = calls_made(
        lambda: lambda_client.get_waiter("function_updated").wait(FunctionName=name)
    )
    version = lambda_client.publish_version(FunctionName=name)["Version"]
    waits["published_version_active"] = calls_made(
        lambda: lambda_client.get_waiter("published_version_active").wait(
            FunctionName=name, Qualifier=version
        )
    )
    lambda_client.meta.events.unregister("before-call.lambda", count)
    assert waits == dict.fromkeys(waits, 1), waits


# --------------------------------------------------------------------------- versions


def test_versions_carry_their_own_state(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    created = create_function(Publish=True)
    name = created["FunctionName"]
    # Published with the create: answered Pending like it, Active once the code is ready.
    assert (created["Version"], states_of(created)["State"]) == ("1", "Pending")
    one = lambda_client.get_function_configuration(FunctionName=name, Qualifier="1")
    assert states_of(one) == {"State": "Active", "LastUpdateStatus": "Successful"}
    assert one["RevisionId"] != created["RevisionId"]

    # Published from an Active $LATEST, whose code is ready: Active at once.
    lambda_client.update_function_configuration(FunctionName=name, Description="two")
    two = lambda_client.publish_version(FunctionName=name)
    assert (two["Version"], states_of(two)) == (
        "2",
        {"State": "Active", "LastUpdateStatus": "Successful"},
    )

    # Published with an update: Pending in the answer, Active afterwards; the others stay.
    three = lambda_client.update_function_code(
        FunctionName=name, ZipFile=make_zip({"app.py": returns(3)}), Publish=True
    )
    assert (three["Version"], states_of(three)["State"]) == ("3", "Pending")
    versions = lambda_client.list_versions_by_function(FunctionName=name)["Versions"]
    assert [(config["Version"], config["State"]) for config in versions] == [
        ("$LATEST", "Active"),
        ("1", "Active"),
        ("2", "Active"),
        ("3", "Active"),
    ]
    assert invoke(lambda_client, f"{name}:3") == 3


# ------------------------------------------------------------- Pending and InProgress


def test_a_pending_function_refuses_invocations_and_changes(
    gated: LaminaServer,
    gate: S3Gate,
    moto: MotoServer,
    background: concurrent.futures.ThreadPoolExecutor,
    unique_name: Callable[[str], str],
) -> None:
    client = gated.client()
    name, key = unique_name("pending"), unique_name("code") + ".zip"
    put_code(moto, key, returns("ready"))
    hold = gate.hold(key)
    creating = held_create(background, client, name, key)
    reached(hold)

    # Lamina is reading the code: the function exists, Pending.
    seen = client.get_function(FunctionName=name)["Configuration"]
    assert states_of(seen) == {
        "State": "Pending",
        "StateReason": CREATING_REASON,
        "StateReasonCode": "Creating",
    }
    refused: dict[str, Callable[[], Any]] = {
        "Invoke": lambda: client.invoke(FunctionName=name, Payload=b"{}"),
        "Invoke(Event)": lambda: client.invoke(
            FunctionName=name, Payload=b"{}", InvocationType="Event"
        ),
        "UpdateFunctionConfiguration": lambda: client.update_function_configuration(
            FunctionName=name, Timeout=9
        ),
        "UpdateFunctionCode": lambda: client.update_function_code(
            FunctionName=name, ZipFile=make_zip()
        ),
        "PublishVersion": lambda: client.publish_version(FunctionName=name),
    }
    for operation, call in refused.items():
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_of(excinfo) == ("ResourceConflictException", PENDING_REFUSAL, 409), operation

    hold.release()
    created = creating.result(30)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert states_of(created)["State"] == "Pending"
    assert created["CodeSize"] > 0
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    assert invoke(client, name) == "ready"


def test_s3_failing_while_pending_is_the_create_error_and_leaves_no_function(
    gated: LaminaServer,
    gate: S3Gate,
    moto: MotoServer,
    background: concurrent.futures.ThreadPoolExecutor,
    unique_name: Callable[[str], str],
) -> None:
    client = gated.client()
    name, key = unique_name("denied"), unique_name("code") + ".zip"
    put_code(moto, key, returns(1))
    hold = gate.hold(key)
    creating = held_create(background, client, name, key)
    reached(hold)
    hold.fail()
    with pytest.raises(ClientError) as excinfo:
        creating.result(30)
    code, message, status = error_of(excinfo)
    # Synchronous, as AWS answers an S3 object it cannot read.
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "S3 Error Code: AccessDenied" in message
    with pytest.raises(ClientError) as excinfo:
        client.get_function(FunctionName=name)
    assert error_of(excinfo)[0] == "ResourceNotFoundException"


def test_a_second_update_while_one_is_in_progress_is_a_conflict(
    gated: LaminaServer,
    gate: S3Gate,
    moto: MotoServer,
    background: concurrent.futures.ThreadPoolExecutor,
    unique_name: Callable[[str], str],
) -> None:
    client = gated.client()
    name, key = unique_name("busy"), unique_name("code") + ".zip"
    client.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": returns("old")})},
    )
    put_code(moto, key, returns("new"))
    hold = gate.hold(key)
    updating = background.submit(
        client.update_function_code, FunctionName=name, S3Bucket=BUCKET, S3Key=key
    )
    reached(hold)

    seen = client.get_function(FunctionName=name)["Configuration"]
    assert (seen["State"], seen["LastUpdateStatus"]) == ("Active", "InProgress")
    refused: list[Callable[[], Any]] = [
        lambda: client.update_function_configuration(FunctionName=name, Timeout=9),
        lambda: client.update_function_code(FunctionName=name, ZipFile=make_zip()),
        lambda: client.publish_version(FunctionName=name),
    ]
    for call in refused:
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_of(excinfo) == ("ResourceConflictException", in_update_conflict(name), 409)
    # Meanwhile invocations run the code and configuration from before the update, as on AWS.
    assert invoke(client, name) == "old"

    hold.release()
    assert updating.result(30)["LastUpdateStatus"] == "InProgress"
    client.get_waiter("function_updated_v2").wait(FunctionName=name)
    assert invoke(client, name) == "new"


# ------------------------------------------------------------------------------ Failed


def test_code_that_does_not_unpack_fails_the_create(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    # A file and a folder of the same name: the zip is read, but cannot be unpacked.
    created = create_function(Code={"ZipFile": make_zip({"lib": "x", "lib/mod.py": "y = 1"})})
    name = created["FunctionName"]
    assert created["State"] == "Pending"
    failed = lambda_client.get_function_configuration(FunctionName=name)
    assert states_of(failed) == {
        "State": "Failed",
        "StateReason": INVALID_ENTRIES,
        "StateReasonCode": "InvalidZipFileException",
        "LastUpdateStatus": "Failed",
        "LastUpdateStatusReason": INVALID_ENTRIES,
        "LastUpdateStatusReasonCode": "InvalidZipFileException",
    }
    with pytest.raises(WaiterError, match="terminal failure state"):
        lambda_client.get_waiter("function_active_v2").wait(FunctionName=name)
    with pytest.raises(ClientError) as excinfo:
        lambda_client.invoke(FunctionName=name, Payload=b"{}")
    assert error_of(excinfo) == (
        "ResourceConflictException",
        PENDING_REFUSAL.replace("Pending", "Failed"),
        409,
    )


def test_an_update_that_does_not_unpack_keeps_the_previous_code(
    lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function(Code={"ZipFile": make_zip({"app.py": returns("kept")})})["FunctionName"]
    before = lambda_client.get_function_configuration(FunctionName=name)
    updated = lambda_client.update_function_code(
        FunctionName=name, ZipFile=make_zip({"lib": "x", "lib/mod.py": "y = 1"})
    )
    assert updated["LastUpdateStatus"] == "InProgress"
    with pytest.raises(WaiterError, match="terminal failure state"):
        lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    after = lambda_client.get_function_configuration(FunctionName=name)
    assert states_of(after) == {
        "State": "Active",
        "LastUpdateStatus": "Failed",
        "LastUpdateStatusReason": INVALID_ENTRIES,
        "LastUpdateStatusReasonCode": "InvalidZipFileException",
    }
    # AWS abandons the update: the previous code and configuration stay, and run.
    assert after["CodeSha256"] == before["CodeSha256"]
    assert after["RevisionId"] not in (before["RevisionId"], updated["RevisionId"])
    assert invoke(lambda_client, name) == "kept"
    # A version published now has no update behind it.
    published = lambda_client.publish_version(FunctionName=name)
    assert states_of(published) == {"State": "Active", "LastUpdateStatus": "Successful"}
    # A failed update does not block the next one.
    lambda_client.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": returns(2)}))
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    assert invoke(lambda_client, name) == 2


def test_layers_that_do_not_unpack_together_fail_the_create(
    lambda_client: Any, create_function: Callable[..., Any], unique_name: Callable[[str], str]
) -> None:
    # One layer has a file `python`, the next a folder `python/`: /opt cannot hold both.
    layers: list[dict[str, str | bytes]] = [{"python": "a file"}, {"python/mod.py": "x = 1"}]
    arns = [
        lambda_client.publish_layer_version(
            LayerName=unique_name("layer"), Content={"ZipFile": make_zip(files)}
        )["LayerVersionArn"]
        for files in layers
    ]
    name = create_function(Layers=arns)["FunctionName"]
    failed = lambda_client.get_function_configuration(FunctionName=name)
    assert (failed["State"], failed["StateReasonCode"], failed["StateReason"]) == (
        "Failed",
        "InvalidZipFileException",
        INVALID_ENTRIES,
    )


# ----------------------------------------------------------------------------- restart


def test_a_create_interrupted_by_a_crash_is_finished_or_failed_at_start(
    tmp_path: Path,
    gate: S3Gate,
    moto: MotoServer,
    background: concurrent.futures.ThreadPoolExecutor,
    unique_name: Callable[[str], str],
) -> None:
    server = LaminaServer(tmp_path / "data", env=gate.env).start()
    client = server.client()
    finished, gone = unique_name("finished"), unique_name("gone")
    keys = {name: unique_name("code") + ".zip" for name in (finished, gone)}
    holds = {}
    for name, key in keys.items():
        put_code(moto, key, returns(name))
        holds[name] = gate.hold(key)
        held_create(background, client, name, key)
        reached(holds[name])
    server.kill()  # both creates accepted Pending, their code still being read

    restarted = LaminaServer(tmp_path / "data", env=gate.env, port=server.port).start()
    try:
        client = restarted.client()
        # Lamina reads the code again at start; until it has it, both are Pending.
        wait_until(lambda: any(hold.reads >= 2 for hold in holds.values()), timeout=15)
        for name in (finished, gone):
            assert client.get_function(FunctionName=name)["Configuration"]["State"] == "Pending"
        with pytest.raises(ClientError) as excinfo:
            client.invoke(FunctionName=finished, Payload=b"{}")
        assert error_of(excinfo)[:2] == ("ResourceConflictException", PENDING_REFUSAL)

        moto.client("s3").delete_object(Bucket=BUCKET, Key=keys[gone])
        for hold in holds.values():
            hold.release()
        client.get_waiter("function_active_v2").wait(FunctionName=finished)
        assert invoke(client, finished) == finished
        with pytest.raises(WaiterError):
            client.get_waiter("function_active_v2").wait(FunctionName=gone)
        failed = client.get_function_configuration(FunctionName=gone)
        assert (failed["State"], failed["StateReasonCode"]) == ("Failed", "InternalError")
        assert "S3 Error Code: NoSuchKey" in failed["StateReason"]
    finally:
        restarted.stop()
