"""`lamina cost`: requests, billed GB-seconds and their AWS list price, from the server's
usage records, which survive a restart."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE, log_tail
from tests.support.lamina_cli import run_lamina
from tests.support.server import LaminaServer

X86_GB_SECOND = 0.0000166667
REQUEST = 0.20 / 1_000_000


def billed_ms(response: dict[str, Any]) -> int:
    """Billed Duration from the REPORT line of an invocation's log tail."""
    log = log_tail(response)
    match = re.search(r"Billed Duration: (\d+) ms", log)
    assert match, log
    return int(match.group(1))


def invoke_billed(client: Any, name: str) -> int:
    response = client.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    response["Payload"].read()
    return billed_ms(response)


def cost_json(server: LaminaServer, *args: str, env: dict[str, str] | None = None) -> Any:
    result = run_lamina("cost", *args, "--json", "--endpoint", server.endpoint, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_cost_of_a_function(
    server: LaminaServer, lambda_client: Any, create_function: Callable[..., dict[str, Any]]
) -> None:
    name = create_function(MemorySize=256)["FunctionName"]
    billed = sum(invoke_billed(lambda_client, name) for _ in range(4))

    document = cost_json(server, name, "--since", "1h")
    [row] = document["Usage"]
    assert (row["FunctionName"], row["MemorySize"], row["Architecture"]) == (name, 256, "x86_64")
    assert row["Requests"] == 4
    # What was billed is what each REPORT line said, cold start's init included.
    assert row["BilledDurationMs"] == billed
    assert row["GBSeconds"] == pytest.approx(256 / 1024 * billed / 1000)
    assert row["Cost"] == pytest.approx(4 * REQUEST + row["GBSeconds"] * X86_GB_SECOND)
    assert document["TotalCost"] == pytest.approx(row["Cost"])

    table = run_lamina("cost", name, "--since", "1h", "--endpoint", server.endpoint)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith(f"Lambda usage of {name} since ")
    [line] = [line for line in lines if line.startswith(name)]
    assert line.split()[1:5] == ["x86_64", "256", "MB", "4"]
    assert f"${row['Cost']:.7f}" in line
    assert any(line.startswith("TOTAL") for line in lines)
    assert lines[-1] == (
        "Prices: $0.2 per 1M requests; $0.0000166667 per GB-second on x86_64, "
        "$0.0000133334 on arm64."
    )


def test_every_function_and_arm64_prices(
    server: LaminaServer, lambda_client: Any, create_function: Callable[..., dict[str, Any]]
) -> None:
    arm = create_function(Architectures=["arm64"])["FunctionName"]
    billed = invoke_billed(lambda_client, arm)
    prices = {"LAMINA_PRICE_GB_SECOND_ARM64": "0.001", "LAMINA_PRICE_REQUEST_PER_MILLION": "1"}
    usage = cost_json(server, "--since", "1h", env=prices)["Usage"]
    rows = {row["FunctionName"]: row for row in usage}
    row = rows[arm]
    assert row["Architecture"] == "arm64"
    assert row["Requests"] == 1
    assert row["Cost"] == pytest.approx(1e-6 + 128 / 1024 * billed / 1000 * 0.001)


def test_nothing_since_a_moment_ago(server: LaminaServer) -> None:
    result = run_lamina("cost", "no-such-function", "--since", "1m", "--endpoint", server.endpoint)
    assert result.returncode == 0, result.stderr
    assert "No invocations in that time." in result.stdout


def test_bad_since_and_unreachable_server() -> None:
    bad = run_lamina("cost", "--since", "last tuesday", "--endpoint", "http://127.0.0.1:9")
    assert bad.returncode == 2
    assert "--since takes a duration" in bad.stderr
    down = run_lamina("cost", "--endpoint", "http://127.0.0.1:9")
    assert down.returncode == 1
    assert "no Lamina server answers at http://127.0.0.1:9" in down.stderr


def test_usage_survives_a_restart(tmp_path: Path) -> None:
    server = LaminaServer(tmp_path / "data").start()
    try:
        client = server.client("lambda")
        client.create_function(
            FunctionName="kept",
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": make_zip()},
        )
        billed = sum(invoke_billed(client, "kept") for _ in range(2))
        client.close()
    finally:
        server.stop()  # SIGTERM: a clean shutdown saves what was not saved yet
    server.start()
    try:
        [row] = cost_json(server, "kept")["Usage"]
        assert (row["Requests"], row["BilledDurationMs"]) == (2, billed)
    finally:
        server.stop()
