"""SnapStart for Python over HTTP: init once at publish, environments restored by forking.

Runs under both isolation backends; the isolation checks need the namespace backend (root).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lamina.sandbox.cgroups import CPU_PERIOD_US, Hierarchy, cpu_quota_us, locate
from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE, call, error_of, invoke
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

SOURCE = """
import os, random, time
from snapshot_restore_py import register_after_restore, register_before_snapshot

TOKEN = random.random()  # drawn once, at init: every restored environment shows it
ORDER = []
RESTORED = []

@register_before_snapshot
def first_before():
    ORDER.append("first")

@register_before_snapshot
def second_before():
    ORDER.append("second")
    print("BEFORE-SNAPSHOT", ORDER)

@register_after_restore
def after():
    RESTORED.append("after")

register_after_restore(RESTORED.append, "second-after")

print("INIT-RAN", TOKEN)

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    # /tmp under the namespace backend; a directory of its own under the process backend.
    tmp = os.environ.get("TMPDIR", "/tmp")
    if event.get("write"):
        with open(os.path.join(tmp, event["write"]), "w") as mine:
            mine.write("x")
    return {
        "token": TOKEN,
        "order": ORDER,
        "restored": RESTORED,
        "type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
        "stream": os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME"),
        "uid": os.getuid(),
        "namespaces": [os.readlink("/proc/self/ns/" + kind) for kind in ("mnt", "net")],
        "tmp": sorted(os.listdir(tmp)),
        "pid": os.getpid(),
    }
"""


CREDENTIALS = """
import json, os, socket, time, urllib.error, urllib.parse, urllib.request
import boto3

# A connection made at init: after a restore it is seen closed, as on AWS.
ENDPOINT = urllib.parse.urlparse(os.environ["AWS_ENDPOINT_URL"])
CONNECTION = socket.create_connection((ENDPOINT.hostname, ENDPOINT.port))
SESSION = boto3.Session()
STS = SESSION.client("sts")  # made at init, in the snapshot: it outlives any one session
AT_INIT = STS.get_caller_identity()["Arn"]

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    token = event.get("token") or os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    request = urllib.request.Request(
        os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"], headers={"Authorization": token}
    )
    try:
        with urllib.request.urlopen(request) as response:
            fetched = sorted(json.load(response))
    except urllib.error.HTTPError as error:
        fetched = [error.code, error.read().decode()]
    return {
        "keys": [name for name in os.environ if name.startswith("AWS_") and "KEY" in name],
        "token": "AWS_SESSION_TOKEN" in os.environ,
        "uri": os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
        "init": AT_INIT,
        "now": STS.get_caller_identity()["Arn"],
        "fetched": fetched,
        "method": SESSION.get_credentials().method,
        "pid": os.getpid(),
        "init_connection": closed(CONNECTION),
    }

def closed(connection):
    connection.setblocking(False)
    try:
        return connection.recv(1) == b""
    except BlockingIOError:
        return False  # still open: shared with the snapshot and every other environment
"""

SLOW_INIT = """
import time
time.sleep(2)

def handler(event, context):
    return "ok"
"""

FAILING_INIT = """
raise ValueError("no database")

def handler(event, context):
    return "never"
"""


@pytest.fixture(scope="module", params=["process", "namespace"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LaminaServer]:
    env = {"LAMINA_ISOLATION": request.param, "LAMINA_SNAPSTART": "on"}
    running = LaminaServer(tmp_path_factory.mktemp("snapstart") / "data", env=env).start()
    yield running
    running.stop()


def create(
    client: Any,
    name: str,
    source: str = SOURCE,
    snap: bool = True,
    memory: int = 128,
) -> None:
    extra = {"SnapStart": {"ApplyOn": "PublishedVersions"}} if snap else {}
    client.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": source})},
        Timeout=30,
        MemorySize=memory,
        **extra,
    )
    wait_until(lambda: client.get_function_configuration(FunctionName=name)["State"] == "Active")


def settled(client: Any, name: str, version: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        config = client.get_function_configuration(FunctionName=name, Qualifier=version)
        return config if config["State"] != "Pending" else None

    return wait_until(done, timeout=60)


def messages(server: LaminaServer, name: str) -> list[tuple[str, str]]:
    """(log stream, message) of every line the function logged so far."""
    logs = server.client("logs")
    found: list[tuple[str, str]] = []
    kwargs: dict[str, Any] = {"logGroupName": f"/aws/lambda/{name}"}
    while True:
        page = logs.filter_log_events(**kwargs)
        found += [(event["logStreamName"], event["message"]) for event in page["events"]]
        if not page.get("nextToken"):
            return found
        kwargs["nextToken"] = page["nextToken"]


def test_publish_runs_the_init_once_and_turns_active(server: LaminaServer) -> None:
    client = server.client()
    create(client, "snap-publish")
    published = client.publish_version(FunctionName="snap-publish")
    assert published["Version"] == "1"
    assert published["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
    assert published["State"] == "Pending"
    assert published["StateReasonCode"] == "Creating"
    config = settled(client, "snap-publish", "1")
    assert config["State"] == "Active"
    assert config["LastUpdateStatus"] == "Successful"
    assert config["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
    latest = client.get_function_configuration(FunctionName="snap-publish")
    assert latest["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"}
    lines = messages(server, "snap-publish")
    init_stream = {stream for stream, message in lines if message.startswith("INIT-RAN")}
    assert len(init_stream) == 1
    (stream,) = init_stream
    assert stream.split("/")[3].startswith("[1]")
    in_stream = [message for where, message in lines if where == stream]
    assert in_stream[0].startswith("INIT_START Runtime Version: python:3.12")
    assert any(message.startswith("BEFORE-SNAPSHOT") for message in in_stream)
    assert in_stream[-1].startswith("INIT_REPORT Init Duration: ")


def test_environments_are_restored_from_the_snapshot(server: LaminaServer) -> None:
    client = server.client()
    create(client, "snap-restore")
    client.publish_version(FunctionName="snap-restore")
    settled(client, "snap-restore", "1")
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(
                lambda _: invoke(client, "snap-restore", {"sleep": 1.0}, Qualifier="1"),
                range(2),
            )
        )
    first, second = results
    assert first["pid"] != second["pid"]  # two environments
    assert first["token"] == second["token"]  # one init, before both
    for result in results:
        # Before the snapshot: reverse order of registration, once; after: in order.
        assert result["order"] == ["second", "first"]
        assert result["restored"] == ["after", "second-after"]
        assert result["type"] == "snap-start"
        assert result["stream"] is None  # not set in SnapStart functions (AWS)
    # Warm: the same environment again, its hooks not rerun.
    again = invoke(client, "snap-restore", Qualifier="1")
    assert again["restored"] == ["after", "second-after"]
    lines = messages(server, "snap-restore")
    assert sum(message.startswith("INIT-RAN") for _, message in lines) == 1
    restores = [m for _, m in lines if m.startswith("RESTORE_START Runtime Version: python:3.12")]
    assert len(restores) == 2
    assert sum(m.startswith("RESTORE_REPORT Restore Duration: ") for _, m in lines) == 2
    reports = [message for _, message in lines if message.startswith("REPORT ")]
    assert len(reports) == 3
    restored_reports = [report for report in reports if "Restore Duration:" in report]
    assert len(restored_reports) == 2
    for report in reports:
        assert "Init Duration" not in report
    for report in restored_reports:
        fields = dict(
            field.split(": ", 1) for field in report.removeprefix("REPORT ").split("\t") if field
        )
        assert fields["Restore Duration"].endswith(" ms")
        billed_restore = int(fields["Billed Restore Duration"].removesuffix(" ms"))
        duration = float(fields["Duration"].removesuffix(" ms"))
        billed = int(fields["Billed Duration"].removesuffix(" ms"))
        assert billed >= duration + billed_restore - 1


def test_latest_and_functions_without_the_setting_never_restore(server: LaminaServer) -> None:
    client = server.client()
    create(client, "snap-latest")
    client.publish_version(FunctionName="snap-latest")
    settled(client, "snap-latest", "1")
    version = invoke(client, "snap-latest", Qualifier="1")
    latest = invoke(client, "snap-latest")
    assert latest["type"] == "on-demand"
    assert latest["restored"] == []  # never restored: the hooks do not run
    assert latest["order"] == []
    assert latest["token"] != version["token"]
    create(client, "snap-off", snap=False)
    plain = client.publish_version(FunctionName="snap-off")
    assert plain["State"] == "Active"
    assert plain["SnapStart"] == {"ApplyOn": "None", "OptimizationStatus": "Off"}
    result = invoke(client, "snap-off", Qualifier="1")
    assert result["type"] == "on-demand"
    assert result["restored"] == []


def test_a_version_not_ready_refuses_invocations(server: LaminaServer) -> None:
    client = server.client()
    create(client, "snap-slow", SLOW_INIT)
    client.publish_version(FunctionName="snap-slow")
    with pytest.raises(ClientError) as refused:
        client.invoke(FunctionName="snap-slow", Qualifier="1", Payload=b"{}")
    assert error_of(refused) == (
        "SnapStartNotReadyException",
        "Lambda is initializing your function. It will be ready to invoke once your "
        "function state becomes ACTIVE.",
        409,
    )
    assert settled(client, "snap-slow", "1")["State"] == "Active"
    assert invoke(client, "snap-slow", Qualifier="1") == "ok"


def test_a_failed_init_at_publish_fails_the_version(server: LaminaServer) -> None:
    client = server.client()
    create(client, "snap-broken", FAILING_INIT)
    client.publish_version(FunctionName="snap-broken")
    config = settled(client, "snap-broken", "1")
    assert config["State"] == "Failed"
    assert config["StateReasonCode"] == "FunctionError"
    assert "no database" in config["StateReason"]
    with pytest.raises(ClientError) as refused:
        client.invoke(FunctionName="snap-broken", Qualifier="1", Payload=b"{}")
    code, message, status = error_of(refused)
    assert (code, status) == ("ResourceConflictException", 409)
    assert message.endswith("in the following state: Failed")
    lines = [message for _, message in messages(server, "snap-broken")]
    report = next(line for line in lines if line.startswith("INIT_REPORT"))
    assert "Status: error" in report
    assert any("no database" in line for line in lines)


def test_restored_environments_are_isolated(server: LaminaServer) -> None:
    """Under the namespace backend: a uid and a /tmp of its own for each environment."""
    client = server.client()
    create(client, "snap-iso")
    client.publish_version(FunctionName="snap-iso")
    settled(client, "snap-iso", "1")
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(
            lambda secret: invoke(
                client, "snap-iso", {"sleep": 1.0, "write": secret}, Qualifier="1"
            ),
            ["one", "two"],
        )
    assert first["pid"] != second["pid"]
    assert first["tmp"] == ["one"] or first["tmp"] == ["two"]
    assert second["tmp"] == sorted({"one", "two"} - set(first["tmp"]))
    if server.env.get("LAMINA_ISOLATION") == "namespace":
        assert first["uid"] != second["uid"]
        assert 0 not in (first["uid"], second["uid"])
        # A mount and a network namespace each: neither is the other's.
        assert not set(first["namespaces"]) & set(second["namespaces"])


def snapshot_pid(name: str) -> int:
    """The host pid of the snapshot process of function `name` (process 1 of its PID
    namespace; its forks share its command line and start-up variables)."""
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or b"snapshot.py" not in (entry / "cmdline").read_bytes():
                continue
            variables = (entry / "environ").read_bytes().split(b"\0")
            nspid = next(
                line for line in (entry / "status").read_text().splitlines() if line[:6] == "NSpid:"
            )
        except OSError:
            continue  # it ended while we looked
        if f"AWS_LAMBDA_FUNCTION_NAME={name}".encode() in variables and nspid.split()[-1] == "1":
            return int(entry.name)
    raise AssertionError(f"no snapshot process for {name}")


def restored_environment(client: Any, name: str, memory: int) -> int:
    """The host pid of an environment restored for version 1 of a new function `name`."""
    create(client, name, memory=memory)
    client.publish_version(FunctionName=name)
    settled(client, name, "1")
    return restored_host_pid(name, invoke(client, name, Qualifier="1")["pid"])


def group_of(pid: int) -> Hierarchy:
    """The cgroups process `pid` is in."""
    group, _ = locate(
        Path("/proc/self/mountinfo").read_text(), Path(f"/proc/{pid}/cgroup").read_text()
    )
    assert group is not None
    return group


def cpu_cap(group: Hierarchy, memory: int) -> tuple[Path, str]:
    """The file holding `group`'s CPU quota, and what it holds once capped for `memory` MB."""
    cpu = group.bases["cpu"]
    if group.version == 1:
        return cpu / "cpu.cfs_quota_us", str(cpu_quota_us(memory))
    return cpu / "cpu.max", f"{cpu_quota_us(memory)} {CPU_PERIOD_US}"


def test_the_snapshot_gets_one_environments_cpu_after_its_init(server: LaminaServer) -> None:
    """Init runs at full speed; afterwards whatever stays in the snapshot's cgroup (threads the
    init left running, say) is capped as one environment of its memory size is."""
    if server.env.get("LAMINA_ISOLATION") != "namespace":
        pytest.skip("the process backend makes no cgroups")
    client = server.client()
    create(client, "snap-cpu", memory=256)
    client.publish_version(FunctionName="snap-cpu")
    assert settled(client, "snap-cpu", "1")["State"] == "Active"
    quota, expected = cpu_cap(group_of(snapshot_pid("snap-cpu")), 256)
    assert quota.read_text().strip() == expected


def restored_host_pid(name: str, inner_pid: int) -> int:
    """The host pid of the restored environment of `name` that sees itself as `inner_pid`."""
    snapshot = snapshot_pid(name)
    children = Path(f"/proc/{snapshot}/task/{snapshot}/children").read_text().split()
    for pid in children:
        try:
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue  # a child that ended while we looked is not a warm environment
        if next(line for line in status if line[:6] == "NSpid:").split()[-1] == str(inner_pid):
            return int(pid)
    raise AssertionError(f"no environment {inner_pid} of {name}")


def test_a_restored_environment_is_in_a_cgroup_of_its_own(server: LaminaServer) -> None:
    """The fork joins its environment's cgroup itself, through files the platform opened for
    it (no pid number is written that the snapshot could have recycled): its memory limit is
    its function's, and its group is not the snapshot's."""
    if server.env.get("LAMINA_ISOLATION") != "namespace":
        pytest.skip("the process backend makes no cgroups")
    own = group_of(restored_environment(server.client(), "snap-group", 192))
    snapshot = group_of(snapshot_pid("snap-group"))
    assert own.bases["memory"] != snapshot.bases["memory"]
    limit = "memory.limit_in_bytes" if own.version == 1 else "memory.max"
    assert (own.bases["memory"] / limit).read_text().strip() == str(192 << 20)


def test_a_restored_environment_is_capped_as_its_memory_size_says(server: LaminaServer) -> None:
    """A restored environment's own group gets the CPU share and quota of its memory size
    once its first event is handed over, as an environment started afresh does."""
    if server.env.get("LAMINA_ISOLATION") != "namespace":
        pytest.skip("the process backend makes no cgroups")
    quota, expected = cpu_cap(
        group_of(restored_environment(server.client(), "snap-capped", 320)), 320
    )
    # Written behind the first event, so possibly a moment after the answer.
    wait_until(lambda: quota.read_text().strip() == expected, timeout=10)


def test_deleting_a_version_stops_its_snapshot_and_frees_what_it_held(
    server: LaminaServer,
) -> None:
    """The snapshot of a deleted function ends, with the environments restored from it, and
    their cgroups go (the server learns of the death without waiting for it, and removes an
    environment's group once nothing is left in it)."""
    if server.env.get("LAMINA_ISOLATION") != "namespace":
        pytest.skip("the process backend makes no cgroups")
    client = server.client()
    restored = restored_environment(client, "snap-deleted", 192)
    snapshot = snapshot_pid("snap-deleted")
    groups = [group_of(pid).bases["memory"] for pid in (snapshot, restored)]
    assert groups[0] != groups[1] and all(group.is_dir() for group in groups)
    client.delete_function(FunctionName="snap-deleted")
    wait_until(
        lambda: (
            not Path(f"/proc/{snapshot}").exists()
            and not Path(f"/proc/{restored}").exists()
            and not any(group.exists() for group in groups)
        ),
        timeout=30,
        message="the snapshot, its environment or its cgroup outlived the function",
    )


FORKS_DIE = """
import os
# Init code leaves an at-fork hook behind: every environment forked later ends at once, so
# the platform must notice before it moves anything into that pid's namespaces.
os.register_at_fork(after_in_child=lambda: os._exit(0))

def handler(event, context):
    return "never"
"""


def test_an_environment_that_ends_before_its_admission_fails_as_its_runtime_exited(
    server: LaminaServer,
) -> None:
    """A fork that ends before the platform moved it into its namespaces is seen ending (by
    its pidfd, never by a pid number that could be another process's by then) and reported
    as any runtime that exits during its init; the snapshot goes on serving."""
    client = server.client()
    create(client, "snap-vanish", FORKS_DIE)
    client.publish_version(FunctionName="snap-vanish")
    assert settled(client, "snap-vanish", "1")["State"] == "Active"
    for _ in range(3):
        response, payload = call(client, "snap-vanish", {}, Qualifier="1")
        assert response["FunctionError"] == "Unhandled"
        assert payload == {
            "errorType": "Runtime.ExitError",
            "errorMessage": "Runtime exited with error: exit status 0",
        }
    assert (
        client.get_function_configuration(FunctionName="snap-vanish", Qualifier="1")["State"]
        == "Active"
    )


FORKS_LET_GO = """
import os, time
# Init code leaves an at-fork hook behind that drops every descriptor a fork inherits and
# hangs: the platform sees the fork let go of its admission pipe while it still lives.
def _drop_everything():
    os.closerange(3, 65536)
    time.sleep(60)

os.register_at_fork(after_in_child=_drop_everything)

def handler(event, context):
    return "never"
"""


def test_a_fork_that_lets_go_of_its_admission_is_ended_as_its_runtime(
    server: LaminaServer,
) -> None:
    """What only the fork holds, closed, means the fork is ending or is of no use, whether or
    not the kernel has marked it exited yet: it is the function's failure, never an internal
    error of the platform's."""
    if server.env.get("LAMINA_ISOLATION") != "namespace":
        pytest.skip("the process backend has no admission to let go of")
    client = server.client()
    create(client, "snap-let-go", FORKS_LET_GO)
    client.publish_version(FunctionName="snap-let-go")
    assert settled(client, "snap-let-go", "1")["State"] == "Active"
    response, payload = call(client, "snap-let-go", {}, Qualifier="1")
    assert response["FunctionError"] == "Unhandled"
    assert payload == {
        "errorType": "Runtime.ExitError",
        "errorMessage": "Runtime exited with error: signal: killed",
    }


def test_payload_errors_still_answer_from_a_restored_environment(server: LaminaServer) -> None:
    client = server.client()
    create(client, "snap-json")
    client.publish_version(FunctionName="snap-json")
    settled(client, "snap-json", "1")
    response, result = call(client, "snap-json", {"sleep": 0}, Qualifier="1")
    assert "FunctionError" not in response
    assert json.loads(json.dumps(result))["type"] == "snap-start"


def test_a_version_published_with_the_create_is_snapshotted(server: LaminaServer) -> None:
    client = server.client()
    created = client.create_function(
        FunctionName="snap-created",
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": SOURCE})},
        SnapStart={"ApplyOn": "PublishedVersions"},
        Publish=True,
        LoggingConfig={"LogFormat": "JSON"},
    )
    assert created["Version"] == "1"
    assert settled(client, "snap-created", "1")["State"] == "Active"
    result = invoke(client, "snap-created", Qualifier="1")
    assert result["type"] == "snap-start"
    assert result["restored"] == ["after", "second-after"]
    records = [
        json.loads(message)
        for _, message in messages(server, "snap-created")
        if message.startswith('{"time"')
    ]
    kinds = [record["type"] for record in records]
    assert "platform.initReport" in kinds
    assert "platform.restoreStart" in kinds
    assert "platform.restoreReport" in kinds
    report = next(record for record in records if record["type"] == "platform.report")
    assert "restoreDurationMs" in report["record"]["metrics"]
    assert "initDurationMs" not in report["record"]["metrics"]


SLOW_RESTORE = """
import time
from snapshot_restore_py import register_after_restore

register_after_restore(time.sleep, 11)

def handler(event, context):
    return "late"
"""


def test_a_restore_longer_than_ten_seconds_is_refused(server: LaminaServer) -> None:
    client = server.client()
    create(client, "snap-late", SLOW_RESTORE)
    client.publish_version(FunctionName="snap-late")
    settled(client, "snap-late", "1")
    with pytest.raises(ClientError) as refused:
        client.invoke(FunctionName="snap-late", Qualifier="1", Payload=b"{}")
    assert error_of(refused) == (
        "SnapStartTimeoutException",
        "Lambda couldn't restore the snapshot within the timeout limit.",
        408,
    )


def test_after_a_restart_the_snapshot_is_made_again(tmp_path: Path) -> None:
    """Snapshots live in the server's processes: the first call after a restart is refused
    as not ready (as Lambda refuses a version whose snapshot it dropped) while it is remade.
    (SnapStart is on by default: these servers are not told.)"""
    data = tmp_path / "data"
    env = {"LAMINA_ISOLATION": "process"}
    first = LaminaServer(data, env=env).start()
    try:
        client = first.client()
        create(client, "snap-restart")
        client.publish_version(FunctionName="snap-restart")
        settled(client, "snap-restart", "1")
        token = invoke(client, "snap-restart", Qualifier="1")["token"]
    finally:
        first.stop()
    second = LaminaServer(data, env=env).start()
    try:
        client = second.client()
        with pytest.raises(ClientError) as refused:
            client.invoke(FunctionName="snap-restart", Qualifier="1", Payload=b"{}")
        assert error_of(refused)[0] == "SnapStartNotReadyException"
        again = wait_until(
            lambda: invoke(client, "snap-restart", Qualifier="1"),
            ignoring=(ClientError,),
        )
        assert again["type"] == "snap-start"
        assert again["token"] != token  # a new init: the old snapshot is gone
    finally:
        second.stop()


def test_a_node_keeps_at_most_its_limit_of_snapshots(tmp_path: Path) -> None:
    """Past LAMINA_SNAPSTART_SNAPSHOTS, the least recently used snapshot with no environment
    is stopped; its version's next call is refused as not ready while it is made again. One
    whose environments run is kept, even over the limit."""
    env = {"LAMINA_ISOLATION": "process", "LAMINA_SNAPSTART": "on"}
    server = LaminaServer(tmp_path / "data", env={**env, "LAMINA_SNAPSTART_SNAPSHOTS": "1"})
    server.start()

    def not_ready(name: str) -> None:
        with pytest.raises(ClientError) as refused:
            client.invoke(FunctionName=name, Qualifier="1", Payload=b"{}")
        assert error_of(refused)[0] == "SnapStartNotReadyException"

    def served(name: str) -> dict[str, Any]:
        return wait_until(lambda: invoke(client, name, Qualifier="1"), ignoring=(ClientError,))

    try:
        client = server.client()
        for name in ("snap-kept-a", "snap-kept-b"):
            create(client, name)
            client.publish_version(FunctionName=name)
            assert settled(client, name, "1")["State"] == "Active"
        not_ready("snap-kept-a")  # stopped to make room for b's
        token = served("snap-kept-a")["token"]  # remade: b's, idle, stopped
        not_ready("snap-kept-b")
        served("snap-kept-b")  # remade: a's runs an environment, so it stays
        again = invoke(client, "snap-kept-a", Qualifier="1")
        assert again["token"] == token
    finally:
        server.stop()


def test_an_operator_can_turn_snapstart_off(tmp_path: Path) -> None:
    """With LAMINA_SNAPSTART=off a SnapStart version is published Active at once, reports
    OptimizationStatus Off, and its environments start as any other's."""
    env = {"LAMINA_ISOLATION": "process", "LAMINA_SNAPSTART": "off"}
    plain = LaminaServer(tmp_path / "data", env=env).start()
    try:
        client = plain.client()
        create(client, "snap-unserved")
        published = client.publish_version(FunctionName="snap-unserved")
        assert published["State"] == "Active"
        assert published["SnapStart"] == {
            "ApplyOn": "PublishedVersions",
            "OptimizationStatus": "Off",
        }
        first = invoke(client, "snap-unserved", Qualifier="1")
        assert first["type"] == "on-demand"
        assert first["restored"] == []  # the after-restore hooks never ran
    finally:
        plain.stop()


def test_snapstart_applies_to_python_only(server: LaminaServer) -> None:
    """Java and .NET accept the setting on AWS; Lamina runs neither, so their versions are
    published Active and not optimised, rather than left waiting for a snapshot."""
    client = server.client()
    client.create_function(
        FunctionName="snap-java",
        Runtime="java21",
        Role=ROLE,
        Handler="example.Handler::handleRequest",
        Code={"ZipFile": make_zip({"Handler.class": "not really"})},
        SnapStart={"ApplyOn": "PublishedVersions"},
    )
    wait_until(
        lambda: client.get_function_configuration(FunctionName="snap-java")["State"] == "Active"
    )
    published = client.publish_version(FunctionName="snap-java")
    assert published["State"] == "Active"
    assert published["SnapStart"]["OptimizationStatus"] == "Off"


OVERSIZED_FRAME = """
import os, struct, sys
# The snapshot's control socket is its first argument: claim a 2 GiB message on it.
os.write(int(sys.argv[1]), struct.pack(">I", 2**31) + b"x" * 4096)

def handler(event, context):
    return "never"
"""

SILENT_SNAPSHOT = """
import time, __main__
# Replace the snapshot's reader of fork requests with one that never answers.
__main__.receive = lambda control, max_fds=4: time.sleep(3600)

def handler(event, context):
    return "never"
"""


def test_a_snapshot_that_breaks_its_control_protocol_is_killed(server: LaminaServer) -> None:
    """Init code runs in the snapshot and can write on its control socket: an oversized
    message kills the snapshot (the version fails) and costs the server nothing."""
    client = server.client()
    create(client, "snap-oversized", OVERSIZED_FRAME)
    client.publish_version(FunctionName="snap-oversized")
    assert settled(client, "snap-oversized", "1")["State"] == "Failed"
    client.list_functions()  # the server answers as before


def test_a_snapshot_that_stops_answering_cannot_stall_the_server(server: LaminaServer) -> None:
    client = server.client()
    create(client, "snap-silent", SILENT_SNAPSHOT)
    client.publish_version(FunctionName="snap-silent")
    assert settled(client, "snap-silent", "1")["State"] == "Active"
    with ThreadPoolExecutor(max_workers=4) as pool:
        calls = [pool.submit(call, client, "snap-silent", {}, Qualifier="1") for _ in range(3)]
        # While the forks wait for answers that never come, everything else is served.
        started = time.monotonic()
        client.list_functions()
        assert time.monotonic() - started < 2.0
        with pytest.raises(ClientError) as refused:
            calls[0].result(timeout=60)
    # The snapshot was killed: the call ends in an error, or finds the snapshot being remade.
    assert refused.value.response["Error"]["Code"] in {
        "ServiceException",
        "SnapStartNotReadyException",
    }


def test_provisioned_concurrency_is_refused_on_snapstart_versions(server: LaminaServer) -> None:
    """AWS: SnapStart and provisioned concurrency cannot apply to the same version, whether the
    configuration names the version or an alias that points (or would move) to it."""
    client = server.client()
    create(client, "snap-provisioned", SLOW_INIT.replace("time.sleep(2)", ""))
    client.publish_version(FunctionName="snap-provisioned")
    settled(client, "snap-provisioned", "1")
    client.update_function_configuration(
        FunctionName="snap-provisioned", SnapStart={"ApplyOn": "None"}
    )
    wait_until(
        lambda: (
            client.get_function_configuration(FunctionName="snap-provisioned")["LastUpdateStatus"]
            == "Successful"
        )
    )
    assert client.publish_version(FunctionName="snap-provisioned")["Version"] == "2"
    client.create_alias(FunctionName="snap-provisioned", Name="snap", FunctionVersion="1")
    client.create_alias(FunctionName="snap-provisioned", Name="live", FunctionVersion="2")
    expected = (
        "Provisioned Concurrency Configs cannot be applied to function versions with "
        "SnapStart enabled."
    )
    for qualifier in ("1", "snap"):
        with pytest.raises(ClientError) as refused:
            client.put_provisioned_concurrency_config(
                FunctionName="snap-provisioned",
                Qualifier=qualifier,
                ProvisionedConcurrentExecutions=1,
            )
        assert error_of(refused) == ("InvalidParameterValueException", expected, 400)
    # An alias that routes part of its calls to the SnapStart version is refused too.
    client.create_alias(
        FunctionName="snap-provisioned",
        Name="split",
        FunctionVersion="2",
        RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}},
    )
    with pytest.raises(ClientError) as refused:
        client.put_provisioned_concurrency_config(
            FunctionName="snap-provisioned", Qualifier="split", ProvisionedConcurrentExecutions=1
        )
    assert error_of(refused) == ("InvalidParameterValueException", expected, 400)
    client.put_provisioned_concurrency_config(
        FunctionName="snap-provisioned", Qualifier="live", ProvisionedConcurrentExecutions=1
    )
    weighted = {"RoutingConfig": {"AdditionalVersionWeights": {"1": 0.5}}}
    for moves in ({"FunctionVersion": "1"}, weighted):
        with pytest.raises(ClientError) as refused:
            client.update_alias(FunctionName="snap-provisioned", Name="live", **moves)
        assert error_of(refused) == ("InvalidParameterValueException", expected, 400)
    assert client.get_alias(FunctionName="snap-provisioned", Name="live")["FunctionVersion"] == "2"
    client.delete_provisioned_concurrency_config(FunctionName="snap-provisioned", Qualifier="live")
    client.update_alias(FunctionName="snap-provisioned", Name="live", FunctionVersion="1")


@pytest.fixture(scope="module", params=["process", "namespace"])
def boto_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LaminaServer]:
    """python3.12 functions run on this test's interpreter: it has boto3 (installed with
    Lamina), as Lambda's Python runtimes do."""
    env = {
        "LAMINA_ISOLATION": request.param,
        "LAMINA_SNAPSTART": "on",
        "LAMINA_RUNTIME_PYTHON3_12": sys.executable,
    }
    running = LaminaServer(tmp_path_factory.mktemp("snapstart-boto") / "data", env=env).start()
    yield running
    running.stop()


def test_snapshots_and_their_environments_get_container_credentials(
    boto_server: LaminaServer,
) -> None:
    """As on AWS: no access-key variables, but AWS_CONTAINER_CREDENTIALS_FULL_URI and its
    token, which SDKs fetch from (and refresh from): a client made at init, in the snapshot,
    still acts as the execution role in every restored environment."""
    server = boto_server
    client = server.client()
    create(client, "snap-creds", CREDENTIALS)
    client.publish_version(FunctionName="snap-creds")
    assert settled(client, "snap-creds", "1")["State"] == "Active"
    # Two environments at once: one joins the network namespace made ahead, one makes its own.
    with ThreadPoolExecutor(2) as pool:
        both = list(
            pool.map(lambda _: invoke(client, "snap-creds", {"sleep": 1}, Qualifier="1"), [0, 1])
        )
    assert both[0]["pid"] != both[1]["pid"]
    assert both[0]["fetched"] == both[1]["fetched"]
    # The init's connections (the SDK's own, to STS, too) are theirs no more: each
    # environment reconnected, rather than two writing on one connection.
    assert both[0]["init_connection"] and both[1]["init_connection"]
    result = both[0]
    assert result["keys"] == []
    assert not result["token"]
    if server.env["LAMINA_ISOLATION"] == "namespace":
        # The Runtime API's address, inside the environment's own network namespace.
        assert result["uri"] == "http://127.0.0.1:9001/2021-04-23/credentials"
    else:
        assert result["uri"].startswith("http://127.0.0.1:")
        assert result["uri"].endswith("/2021-04-23/credentials")
    assert result["method"] == "container-role"
    assert result["fetched"] == ["AccessKeyId", "Expiration", "SecretAccessKey", "Token"]
    assert result["init"] == result["now"]
    assert ":assumed-role/" in result["init"]
    assert result["init"].endswith("/snap-creds")
    refused = invoke(client, "snap-creds", {"token": "not-the-token"}, Qualifier="1")
    assert refused["fetched"] == [404, "cannot get credentials for the provided token\n"]
