"""`lamina top --once`: functions with their rates, latency, errors and environments."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.support.archives import make_zip
from tests.support.lamina_cli import run_lamina
from tests.support.server import LaminaServer

HANDLER = """
def handler(event, context):
    if event.get("fail"):
        raise ValueError("no")
    return event
"""


def test_top_once(
    server: LaminaServer, lambda_client: Any, create_function: Callable[..., dict[str, Any]]
) -> None:
    name = create_function(Code={"ZipFile": make_zip({"app.py": HANDLER})})["FunctionName"]
    for payload in (b"{}", b"{}", b"{}", b'{"fail": true}'):
        lambda_client.invoke(FunctionName=name, Payload=payload)["Payload"].read()

    result = run_lamina("top", "--json", "--window", "300", "--endpoint", server.endpoint)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["Window"] == 300
    assert document["Account"]["ConcurrencyLimit"] >= 1
    [row] = [f for f in document["Functions"] if f["FunctionName"] == name]
    assert row["Invocations"] == 4
    assert row["Errors"] == 1
    assert row["ErrorRate"] == 0.25
    assert row["InvocationsPerSecond"] == 4 / 300
    assert 0 < row["DurationP50"] <= row["DurationP99"]
    assert row["ConcurrentExecutions"] == 0
    assert row["WarmEnvironments"] >= 1

    table = run_lamina("top", "--once", "--window", "300", "--endpoint", server.endpoint)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith(f"Lamina at {server.endpoint}")
    assert lines[1].split()[:4] == ["FUNCTION", "INV/S", "P50", "MS"]
    [line] = [line for line in lines if line.startswith(name + " ")]
    fields = line.split()
    assert fields[1] == "0.01"  # 4 invocations in 300 s
    assert fields[4] == "25.0%"
    assert int(fields[-1]) >= 1  # warm environments


def test_top_refuses_a_window_it_does_not_keep(server: LaminaServer) -> None:
    result = run_lamina("top", "--once", "--window", "3600", "--endpoint", server.endpoint)
    assert result.returncode == 1
    assert "window must be 1 to 300 seconds" in result.stderr
