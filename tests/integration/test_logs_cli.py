"""Logs from the command line: `aws logs` against Lamina, and `lamina logs`."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.archives import make_zip
from tests.support.aws_cli import cli_environment, run_aws
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

HANDLER = """
import logging

def handler(event, context):
    print("processing", event["n"])
    if event.get("bad"):
        logging.getLogger().error("could not process %s", event["n"])
    return context.log_stream_name
"""
RED = "\x1b[1;31m"


@pytest.fixture
def chatty(create_function: Callable[..., Any], lambda_client: Any) -> Callable[..., str]:
    """A function, and a way to invoke it; returns the environment's log stream."""
    name = create_function(Code={"ZipFile": make_zip({"app.py": HANDLER})})["FunctionName"]

    def invoke(n: int, bad: bool = False) -> str:
        response = lambda_client.invoke(
            FunctionName=name, Payload=json.dumps({"n": n, "bad": bad}).encode()
        )
        return str(json.loads(response["Payload"].read()))

    invoke.function_name = name  # type: ignore[attr-defined]
    return invoke


def aws_logs(server: LaminaServer, tmp_path: Path, *args: str) -> Any:
    result = run_aws(server.endpoint, tmp_path, "logs", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


def lamina_logs(server: LaminaServer, tmp_path: Path, *args: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "lamina", "logs", *args, "--endpoint", server.endpoint],
        capture_output=True,
        text=True,
        env=cli_environment(tmp_path, **env),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_aws_cli_get_and_filter_log_events(
    server: LaminaServer, tmp_path: Path, chatty: Callable[..., str]
) -> None:
    stream = chatty(1)
    chatty(2, bad=True)
    group = f"/aws/lambda/{chatty.function_name}"  # type: ignore[attr-defined]
    page = aws_logs(
        server,
        tmp_path,
        "get-log-events",
        "--log-group-name",
        group,
        "--log-stream-name",
        stream,
        "--start-from-head",
    )
    messages = [event["message"] for event in page["events"]]
    assert messages[0].startswith("INIT_START") and "processing 1" in messages
    assert page["nextForwardToken"].startswith("f/")
    found = aws_logs(
        server,
        tmp_path,
        "filter-log-events",
        "--log-group-name",
        group,
        "--filter-pattern",
        "ERROR",
    )
    (event,) = found["events"]
    assert event["message"].endswith("could not process 2") and event["logStreamName"] == stream
    described = aws_logs(
        server, tmp_path, "describe-log-streams", "--log-group-name", group, "--order-by",
        "LastEventTime", "--descending",
    )  # fmt: skip
    assert [s["logStreamName"] for s in described["logStreams"]] == [stream]


def test_lamina_logs_prints_and_colours(
    server: LaminaServer, tmp_path: Path, chatty: Callable[..., str]
) -> None:
    chatty(1)
    chatty(2, bad=True)
    name = chatty.function_name  # type: ignore[attr-defined]
    plain = lamina_logs(server, tmp_path, name, "--since", "1h")
    lines = plain.splitlines()
    assert any(line.endswith(" processing 1") for line in lines)
    assert "\x1b" not in plain  # not a terminal
    assert lines[0].split(" ")[1].startswith("[$LATEST]")
    coloured = lamina_logs(server, tmp_path, name, "--since", "1h", "--color", "always")
    (error,) = [line for line in coloured.splitlines() if "could not process" in line]
    assert RED in error
    assert "\x1b" not in lamina_logs(server, tmp_path, name, "--color", "auto", NO_COLOR="1")
    filtered = lamina_logs(server, tmp_path, name, "--since", "1h", "--filter", "processing")
    assert [line.split(" ", 2)[2] for line in filtered.splitlines()] == [
        "processing 1",
        "processing 2",
    ]


def test_lamina_logs_follow_streams_new_events(
    server: LaminaServer, tmp_path: Path, chatty: Callable[..., str]
) -> None:
    name = chatty.function_name  # type: ignore[attr-defined]
    with subprocess.Popen(
        [sys.executable, "-m", "lamina", "logs", name, "--follow", "--endpoint", server.endpoint],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=cli_environment(tmp_path),
    ) as process:
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or []])
        reader.start()

        def printed(text: str) -> bool:
            """Whether the next line (waiting a second for it) holds `text`."""
            try:
                return text in lines.get(timeout=1)
            except queue.Empty:
                assert process.poll() is None, "lamina logs --follow exited"
                return False

        def wait_for(text: str) -> None:
            wait_until(
                lambda: printed(text),
                timeout=30,
                interval=0,
                message=f"lamina logs --follow never printed {text!r}",
            )

        try:
            # The log group does not exist until the first invocation; the follower waits.
            chatty(41)
            chatty(42)
            wait_for("processing 41")
            wait_for("processing 42")
            chatty(43)
            wait_for("processing 43")
        finally:
            process.terminate()
            process.wait(10)
            reader.join(10)
