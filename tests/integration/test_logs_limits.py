"""The log store's limits on a server of their own: the disk bound, and a function that logs
100 MB in one invocation without growing the server's memory."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE
from tests.support.server import LaminaServer

MB = 1024 * 1024
FLOOD = """
import sys

def handler(event, context):
    chunk = ("x" * 1023 + "\\n") * 1024  # 1 MB of 1 KB lines
    for _ in range(event["mb"]):
        sys.stdout.write(chunk)
    sys.stdout.flush()
    return "done"
"""


def memory_kb(pid: int, field: str) -> int:
    """VmRSS (resident now) or VmHWM (peak resident) of a process, in KB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} missing from /proc/{pid}/status")


@pytest.fixture
def bounded_server(tmp_path: Path) -> Iterator[LaminaServer]:
    server = LaminaServer(
        tmp_path / "data",
        env={"LAMINA_LOG_STORE_MAX_MB": "1", "LAMINA_LOG_INVOCATION_MAX_MB": "8"},
    ).start()
    yield server
    server.stop()


def test_the_store_stays_within_its_disk_bound(bounded_server: LaminaServer) -> None:
    logs = bounded_server.client("logs")
    logs.create_log_group(logGroupName="/bound")
    logs.create_log_stream(logGroupName="/bound", logStreamName="s")
    start = int(time.time() * 1000)
    for batch in range(6):  # 6 x 800 KB: nearly five times the bound
        logs.put_log_events(
            logGroupName="/bound",
            logStreamName="s",
            logEvents=[
                {"timestamp": start + batch * 100 + i, "message": f"{batch}:{i} " + "y" * 8000}
                for i in range(100)
            ],
        )
    (group,) = logs.describe_log_groups(logGroupNamePrefix="/bound")["logGroups"]
    assert group["storedBytes"] <= 1 * MB
    store = bounded_server.data_dir / "logs.db"
    on_disk = sum(
        path.stat().st_size for path in (store, store.with_name("logs.db-wal")) if path.exists()
    )
    assert on_disk <= 1 * MB + 256 * 1024
    # The newest events stay; the oldest were dropped to make room.
    events = logs.get_log_events(logGroupName="/bound", logStreamName="s", startFromHead=True)
    messages = [event["message"] for event in events["events"]]
    assert messages[-1].startswith("5:99 ")
    assert not any(message.startswith("0:") for message in messages)
    logs.close()


def test_a_100_mb_flood_is_truncated_and_memory_stays_bounded(
    bounded_server: LaminaServer, tmp_path: Path
) -> None:
    lambda_client = bounded_server.client("lambda", read_timeout=300)
    logs = bounded_server.client("logs")
    lambda_client.create_function(
        FunctionName="flood",
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Timeout=300,
        Code={"ZipFile": make_zip({"app.py": FLOOD})},
    )

    def invoke(mb: int) -> Any:
        response = lambda_client.invoke(FunctionName="flood", Payload=json.dumps({"mb": mb}))
        return json.loads(response["Payload"].read())

    assert invoke(1) == "done"  # warm: the server's own code and buffers are in place
    assert bounded_server.process is not None
    pid = bounded_server.process.pid
    before = memory_kb(pid, "VmRSS")
    assert invoke(100) == "done"
    peak = memory_kb(pid, "VmHWM")
    # 100 MB went through the server; its resident memory grew by a bounded buffer at most.
    assert peak - before < 48 * 1024, f"server RSS grew by {(peak - before) // 1024} MB"
    (stream,) = logs.describe_log_streams(logGroupName="/aws/lambda/flood")["logStreams"]
    found = logs.filter_log_events(
        logGroupName="/aws/lambda/flood", filterPattern='"output truncated"'
    )["events"]
    assert [event["message"] for event in found] == [
        "[lamina] output truncated: this invocation logged more than 8 MB; the rest of its "
        "output was dropped"
    ]
    # The platform lines after the cut are there: the next invocation's budget starts afresh.
    tail = logs.get_log_events(
        logGroupName="/aws/lambda/flood", logStreamName=stream["logStreamName"], limit=2
    )["events"]
    assert [event["message"].split(" ")[0] for event in tail] == ["END", "REPORT"]
    lambda_client.close()
    logs.close()
