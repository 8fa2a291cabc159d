"""LoggingConfig LogFormat=JSON: the records Lambda writes, filtered by ApplicationLogLevel
and SystemLogLevel, in the stored stream and in the Invoke tail."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lamina.runtimes.registry import RuntimeRegistry
from tests.support.archives import make_zip
from tests.support.lambda_api import log_tail
from tests.support.server import LaminaServer

PYTHON = """
import json, logging

def handler(event, context):
    log = logging.getLogger("app")
    log.debug("debug detail")
    log.info("info detail", extra={"orderId": 42})
    log.warning("warn detail")
    print(json.dumps({"level": "DEBUG", "message": "printed debug"}))
    print("plain print")
    if event.get("fail"):
        raise ValueError("structured failure")
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("handled")
    return context.log_stream_name
"""
NODE = """
exports.handler = async (event, context) => {
  console.debug("node debug");
  console.info("node info", {a: 1});
  console.error(new Error("node error"));
  return context.logStreamName;
};
"""
_NODE = next((n for n in ("nodejs20.x", "nodejs22.x") if RuntimeRegistry().interpreter(n)), None)


@pytest.fixture(scope="module")
def logs(server: LaminaServer) -> Iterator[Any]:
    client = server.client("logs")
    yield client
    client.close()


def run(
    create_function: Callable[..., Any],
    lambda_client: Any,
    logs: Any,
    logging_config: dict[str, str],
    payload: dict[str, Any] | None = None,
    **overrides: Any,
) -> tuple[list[dict[str, Any]], str]:
    """Invoke once; the stored records (each parsed if JSON) and the Invoke log tail."""
    options: dict[str, Any] = {
        "Handler": "app.handler",
        "Code": {"ZipFile": make_zip({"app.py": PYTHON})},
        "LoggingConfig": {"LogFormat": "JSON", **logging_config},
    }
    options.update(overrides)
    name = create_function(**options)["FunctionName"]
    response = lambda_client.invoke(
        FunctionName=name, Payload=json.dumps(payload or {}).encode(), LogType="Tail"
    )
    stream = json.loads(response["Payload"].read())
    if not isinstance(stream, str):  # a function error: find the stream through the API
        (described,) = logs.describe_log_streams(logGroupName=f"/aws/lambda/{name}")["logStreams"]
        stream = described["logStreamName"]
    events = logs.get_log_events(
        logGroupName=f"/aws/lambda/{name}", logStreamName=stream, startFromHead=True
    )["events"]
    records = []
    for event in events:
        try:
            records.append(json.loads(event["message"]))
        except ValueError:
            records.append({"text": event["message"]})
    return records, log_tail(response)


def platform_types(records: list[dict[str, Any]]) -> list[str]:
    return [r["type"] for r in records if str(r.get("type", "")).startswith("platform.")]


def application(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if "type" not in r]


def test_default_levels_are_info(
    create_function: Callable[..., Any], lambda_client: Any, logs: Any
) -> None:
    records, tail = run(create_function, lambda_client, logs, {})
    assert platform_types(records) == ["platform.initStart", "platform.start", "platform.report"]
    start = next(r for r in records if r.get("type") == "platform.start")
    assert start["record"]["version"] == "$LATEST" and start["time"].endswith("Z")
    report = next(r for r in records if r.get("type") == "platform.report")
    assert report["record"]["status"] == "success"
    assert {"durationMs", "billedDurationMs", "memorySizeMB", "maxMemoryUsedMB"} <= set(
        report["record"]["metrics"]
    )
    app = application(records)
    info = next(r for r in app if r.get("message") == "info detail")
    assert info["level"] == "INFO" and info["logger"] == "app" and info["orderId"] == 42
    assert info["requestId"] == start["record"]["requestId"]
    assert info["timestamp"].endswith("Z")
    handled = next(r for r in app if r.get("message") == "handled")
    assert handled["errorType"] == "ZeroDivisionError" and handled["stackTrace"]
    messages = [r.get("message", r.get("text")) for r in app]
    # DEBUG is below INFO, whether logged or printed as JSON with its own level.
    assert messages == ["info detail", "warn detail", "plain print", "handled"]
    assert '"type": "platform.report"' in tail or '"type":"platform.report"' in tail


def test_debug_levels_show_everything(
    create_function: Callable[..., Any], lambda_client: Any, logs: Any
) -> None:
    records, _ = run(
        create_function,
        lambda_client,
        logs,
        {"ApplicationLogLevel": "DEBUG", "SystemLogLevel": "DEBUG"},
    )
    assert "platform.runtimeDone" in platform_types(records)
    messages = [r.get("message", r.get("text")) for r in application(records)]
    assert messages[:3] == ["debug detail", "info detail", "warn detail"]
    assert "printed debug" in messages


def test_warn_levels_keep_only_warnings_errors_and_failures(
    create_function: Callable[..., Any], lambda_client: Any, logs: Any
) -> None:
    records, _ = run(
        create_function,
        lambda_client,
        logs,
        {"ApplicationLogLevel": "WARN", "SystemLogLevel": "WARN"},
        payload={"fail": True},
        Timeout=30,
    )
    assert platform_types(records) == []
    app = application(records)
    assert [r.get("level") for r in app] == ["WARNING", "ERROR"]
    error = app[-1]
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "structured failure"
    assert error["requestId"] and error["stackTrace"]


@pytest.mark.skipif(_NODE is None, reason="no Node.js 20 or 22 on this host")
def test_node_json_records(
    create_function: Callable[..., Any], lambda_client: Any, logs: Any
) -> None:
    records, _ = run(
        create_function,
        lambda_client,
        logs,
        {},
        Runtime=_NODE,
        Handler="index.handler",
        Code={"ZipFile": make_zip({"index.js": NODE})},
    )
    app = application(records)
    assert [r["level"] for r in app] == ["INFO", "ERROR"]
    assert app[0]["message"] == "node info { a: 1 }"
    assert app[1]["message"]["errorMessage"] == "node error"
