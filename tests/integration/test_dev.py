"""`lamina dev DIR`, run as a user runs it: deploy, edit, and the next request runs the edit.

Every test starts the real command in a child process on a temporary directory and waits for
the line it prints once a deploy has finished: from that line on, the next invoke must run
the new code. Nothing sleeps and then asserts.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.support.function_urls import url_pattern
from tests.support.lambda_api import call
from tests.support.ports import free_port
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

DEADLINE_S = 60.0


class DevProcess:
    """`python -m lamina dev ...`, with its output collected line by line."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lamina", "dev", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_for(self, pattern: str) -> re.Match[str]:
        """The first line from now on that matches, within the deadline."""

        def next_line_matches() -> re.Match[str] | None:
            try:
                line = self._lines.get(timeout=1)
            except queue.Empty:
                return None
            if line is None:
                raise AssertionError(f"exited before {pattern!r}:\n" + self.transcript)
            self.output.append(line)
            return re.search(pattern, line)

        return wait_until(
            next_line_matches,
            timeout=DEADLINE_S,
            interval=0,
            message=lambda: f"no line matched {pattern!r}:\n" + self.transcript,
        )

    @property
    def transcript(self) -> str:
        return "\n".join(self.output)

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(10)
        while not self._lines.empty():
            line = self._lines.get_nowait()
            if line is not None:
                self.output.append(line)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code


@pytest.fixture
def start_dev(tmp_path: Path) -> Iterator[Callable[..., DevProcess]]:
    started: list[DevProcess] = []

    def start(*args: str) -> DevProcess:
        process = DevProcess(*args, cwd=tmp_path)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


PYTHON_V1 = """\
import os

CALLS = 0

def handler(event, context):
    global CALLS
    CALLS += 1
    return {"version": 1, "calls": CALLS, "greeting": os.environ.get("GREETING")}
"""


def test_a_save_redeploys_and_the_next_request_runs_it(
    tmp_path: Path, server: LaminaServer, lambda_client: Any, unique_name: Any, start_dev: Any
) -> None:
    name = unique_name("dev")
    write(tmp_path / "hello" / "app.py", PYTHON_V1)
    dev = start_dev(
        "hello", "--endpoint", server.endpoint, "--name", name, "--memory", "256",
        "--env", "GREETING=hi",
    )  # fmt: skip
    dev.wait_for(rf"^Created {name} \(python3\.12, handler app\.handler, 1 files")
    dev.wait_for(r"^Watching ")
    config = lambda_client.get_function_configuration(FunctionName=name)
    assert config["MemorySize"] == 256
    assert config["Environment"]["Variables"] == {"GREETING": "hi"}
    assert call(lambda_client, name, {})[1] == {"version": 1, "calls": 1, "greeting": "hi"}
    assert call(lambda_client, name, {})[1]["calls"] == 2  # a warm environment

    write(tmp_path / "hello" / "app.py", PYTHON_V1.replace('"version": 1', '"version": 2'))
    dev.wait_for(rf"redeployed {name} #2 in \d+\.\d\ds: app\.py$")
    # The very next request runs the new code, in a new environment.
    assert call(lambda_client, name, {})[1] == {"version": 2, "calls": 1, "greeting": "hi"}

    # SIGTERM ends the loop as cleanly as Ctrl-C.
    assert dev.stop(signal.SIGTERM) == 0
    assert dev.output[-1] == "Stopped."


def test_a_syntax_error_does_not_end_the_loop(
    tmp_path: Path, server: LaminaServer, lambda_client: Any, unique_name: Any, start_dev: Any
) -> None:
    name = unique_name("dev")
    source = tmp_path / "fn" / "lambda_function.py"
    write(source, "def lambda_handler(event, context):\n    return 'good'\n")
    dev = start_dev("fn", "--endpoint", server.endpoint, "--name", name)
    dev.wait_for(r"handler lambda_function\.lambda_handler")
    dev.wait_for(r"^Watching ")
    assert call(lambda_client, name, {})[1] == "good"

    write(source, "def lambda_handler(event, context):\n    return 'broken\n")
    dev.wait_for(rf"redeployed {name} #2 ")
    response, error = call(lambda_client, name, {})
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "Runtime.UserCodeSyntaxError"

    write(source, "def lambda_handler(event, context):\n    return 'fixed'\n")
    dev.wait_for(rf"redeployed {name} #3 ")
    assert call(lambda_client, name, {})[1] == "fixed"


def test_node_is_guessed_and_editor_files_are_ignored(
    tmp_path: Path, server: LaminaServer, lambda_client: Any, unique_name: Any, start_dev: Any
) -> None:
    name = unique_name("dev")
    function = tmp_path / "node-fn"
    write(function / "index.mjs", "export const handler = async () => ({ v: 1 });\n")
    dev = start_dev(str(function), "--endpoint", server.endpoint, "--name", name)
    dev.wait_for(rf"^Created {name} \(nodejs20\.x, handler index\.handler")
    dev.wait_for(r"^Watching ")
    assert call(lambda_client, name, {})[1] == {"v": 1}

    # Swap files, caches and VCS state: none of them is deployed or named as a change.
    write(function / ".index.mjs.swp", "swap")
    write(function / "#index.mjs#", "autosave")
    write(function / "node_modules" / ".cache" / "babel.json", "{}")
    write(function / ".git" / "index", "git")
    write(function / "index.mjs", "export const handler = async () => ({ v: 2 });\n")
    line = dev.wait_for(r"redeployed .*")
    assert re.search(rf"redeployed {name} #2 in \d+\.\d\ds: index\.mjs$", line[0]), line[0]
    assert call(lambda_client, name, {})[1] == {"v": 2}


def test_without_a_server_it_starts_one_and_stops_it(
    tmp_path: Path, unique_name: Any, start_dev: Any
) -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    write(
        tmp_path / "web" / "app.py",
        "def handler(event, context):\n    return {'statusCode': 200, 'body': 'one'}\n",
    )
    dev = start_dev("web", "--endpoint", endpoint, "--data-dir", "data", "--url")
    dev.wait_for(rf"^Starting a Lamina server at {endpoint}")
    url = dev.wait_for(r"^  url:    curl (http://\S+)$")[1]
    dev.wait_for(r"^Watching ")
    client = boto3.client(
        "lambda",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}),
    )
    try:
        assert call(client, "web", {})[1] == {"statusCode": 200, "body": "one"}
        assert client.get_function_url_config(FunctionName="web")["AuthType"] == "NONE"
        policy = json.loads(client.get_policy(FunctionName="web")["Policy"])
        actions = sorted(statement["Action"] for statement in policy["Statement"])
        assert actions == ["lambda:InvokeFunction", "lambda:InvokeFunctionUrl"]
    finally:
        client.close()
    # The URL as printed is one this machine resolves (see test_function_url_addresses.py).
    assert url_pattern(port).match(url)
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == b"one"

    write(
        tmp_path / "web" / "app.py",
        "def handler(event, context):\n    return {'statusCode': 200, 'body': 'two'}\n",
    )
    dev.wait_for(r"redeployed web #2 ")
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == b"two"

    assert dev.stop(signal.SIGINT) == 0
    assert dev.output[-1] == "Stopped."
    # The embedded server was stopped before `lamina dev` exited.
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass
    assert (tmp_path / "data" / "lamina.db").exists()


def run_dev(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lamina", "dev", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        # Nothing may be contacted: the guess fails before any server is looked for.
        env={**os.environ, "LAMINA_PORT": str(free_port())},
    )


def test_what_cannot_be_guessed_is_said(tmp_path: Path) -> None:
    write(tmp_path / "empty" / "README.md", "nothing to run\n")
    result = run_dev(tmp_path, "empty")
    assert result.returncode == 2
    assert "cannot tell how to run empty" in result.stderr
    assert "--runtime and --handler" in result.stderr

    write(tmp_path / "both" / "app.py", "def handler(event, context):\n    pass\n")
    write(tmp_path / "both" / "index.js", "exports.handler = async () => 1;\n")
    result = run_dev(tmp_path, "both")
    assert result.returncode == 2
    assert "has both Python and Node.js handlers (app.handler, index.handler)" in result.stderr

    result = run_dev(tmp_path, "both", "--handler", "main.run")
    assert result.returncode == 2
    assert "cannot tell the runtime of handler main.run" in result.stderr

    result = run_dev(tmp_path, "missing")
    assert result.returncode == 2
    assert "missing is not a directory" in result.stderr
