"""`lamina tune`: the function at several memory sizes, cheapest and fastest marked, the
function itself left as it was."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.archives import make_zip
from tests.support.lamina_cli import run_lamina
from tests.support.server import LaminaServer

HANDLER = """
import os

def handler(event, context):
    if event.get("fail"):
        raise RuntimeError("tuning a broken function")
    return {"memory": os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "n": event["n"]}
"""


def test_tune_prints_the_trade_off_and_leaves_the_function_alone(
    server: LaminaServer,
    lambda_client: Any,
    create_function: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    created = create_function(
        Code={"ZipFile": make_zip({"app.py": HANDLER})},
        MemorySize=192,
        Environment={"Variables": {"KEEP": "me"}},
    )
    name = created["FunctionName"]
    revision = lambda_client.get_function_configuration(FunctionName=name)["RevisionId"]
    payload = tmp_path / "event.json"
    payload.write_text(json.dumps({"n": 1}))
    before = {f["FunctionName"] for f in lambda_client.list_functions()["Functions"]}

    result = run_lamina(
        "tune", name, "--payload", str(payload), "--memory", "256,128", "--runs", "2",
        "--endpoint", server.endpoint,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Power tuning {name} (python3.12, x86_64): 2 runs")
    rows = [
        line for line in lines if line.strip().endswith(("cheapest", "fastest")) or " MB " in line
    ]
    sizes = [line.split()[0] for line in rows if line.split()[1] == "MB"]
    assert sizes == ["128", "256"]
    assert sum("cheapest" in line for line in rows) == 1
    assert sum("fastest" in line for line in rows) == 1
    assert lines[-2].startswith("Cheapest: ")
    assert lines[-1].startswith("Fastest: ")

    after = lambda_client.get_function_configuration(FunctionName=name)
    assert after["MemorySize"] == 192
    assert after["Environment"]["Variables"] == {"KEEP": "me"}
    assert after["RevisionId"] == revision
    # The temporary copy is gone.
    assert {f["FunctionName"] for f in lambda_client.list_functions()["Functions"]} == before


def test_tune_json_prices_each_size(
    server: LaminaServer, create_function: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    name = create_function(Code={"ZipFile": make_zip({"app.py": HANDLER})})["FunctionName"]
    payload = tmp_path / "event.json"
    payload.write_text('{"n": 2}')
    result = run_lamina(
        "tune", name, "--payload", str(payload), "--memory", "128,1024", "--runs", "1",
        "--json", "--endpoint", server.endpoint,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    settings = {s["MemorySize"]: s for s in document["Settings"]}
    assert set(settings) == {128, 1024}
    for size, setting in settings.items():
        billed = setting["AverageBilledDurationMs"]
        assert billed >= setting["AverageDurationMs"]
        expected = 0.2e-6 + size / 1024 * billed / 1000 * 0.0000166667
        assert abs(setting["CostPerInvocation"] - expected) < 1e-15
    assert document["Cheapest"] in settings
    assert document["Fastest"] in settings


def test_tune_stops_on_a_function_error_and_cleans_up(
    server: LaminaServer,
    lambda_client: Any,
    create_function: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    name = create_function(Code={"ZipFile": make_zip({"app.py": HANDLER})})["FunctionName"]
    payload = tmp_path / "event.json"
    payload.write_text('{"fail": true}')
    before = {f["FunctionName"] for f in lambda_client.list_functions()["Functions"]}
    result = run_lamina(
        "tune", name, "--payload", str(payload), "--memory", "128", "--endpoint", server.endpoint
    )
    assert result.returncode == 1
    assert "the function failed (Unhandled)" in result.stderr
    assert "tuning a broken function" in result.stderr
    assert {f["FunctionName"] for f in lambda_client.list_functions()["Functions"]} == before


def test_tune_refuses_bad_memory_sizes(server: LaminaServer) -> None:
    result = run_lamina("tune", "any", "--memory", "64", "--endpoint", server.endpoint)
    assert result.returncode == 1
    assert "memory sizes must be 128 to 10240 MB" in result.stderr
