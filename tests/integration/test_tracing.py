"""Tracing over HTTP: X-Ray headers into functions, spans to a real OTLP collector, REPORT.

One Lamina server exports to a collector process (`tests.support.otlp_collector`) and
samples every actively traced invocation (`LAMINA_TRACE_SAMPLE_RATE=1`), so what is
recorded is decided by the tracing mode and the caller's header alone.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lamina.runtimes.registry import RuntimeRegistry
from tests.support.archives import make_zip
from tests.support.function_urls import allow_public, fetch
from tests.support.lambda_api import ROLE, log_tail
from tests.support.otlp_collector import OtlpCollector
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

ROOT = re.compile(r"1-[0-9a-f]{8}-[0-9a-f]{24}")
SPAN_ID = re.compile(r"[0-9a-f]{16}")
SERVER_KIND = 2  # opentelemetry.proto.trace.v1.Span.SPAN_KIND_SERVER
STATUS_ERROR = 2

HANDLERS = """
import os

def trace(event, context):
    return {"trace": os.environ.get("_X_AMZN_TRACE_ID")}

def fail(event, context):
    raise ValueError("nope")

def everywhere(event, context):
    import ctypes, subprocess
    getenv = ctypes.CDLL(None).getenv
    getenv.restype = ctypes.c_char_p
    in_c = getenv(b"_X_AMZN_TRACE_ID")
    child = subprocess.run(
        ["/bin/sh", "-c", 'printf %s "$_X_AMZN_TRACE_ID"'], capture_output=True, text=True
    ).stdout
    return {
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "c": in_c.decode() if in_c is not None else None,
        "child": child,
    }

def log_trace(event, context):
    print("TRACE=" + os.environ.get("_X_AMZN_TRACE_ID", ""))

def url(event, context):
    return {"statusCode": 200, "body": os.environ.get("_X_AMZN_TRACE_ID", "")}
"""

NODE_HANDLER = """
exports.trace = async () => ({ trace: process.env._X_AMZN_TRACE_ID ?? null });
"""
_REGISTRY = RuntimeRegistry()
NODE = next((name for name in ("nodejs20.x", "nodejs22.x") if _REGISTRY.interpreter(name)), None)


def new_root() -> str:
    return f"1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"


def fields(header: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in header.split(";"))


def otel_id(root: str) -> str:
    """The collector's 32-hex trace id of an X-Ray root."""
    return root[2:10] + root[11:]


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OtlpCollector]:
    instance = OtlpCollector(tmp_path_factory.mktemp("otlp")).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def traced(
    collector: OtlpCollector, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LaminaServer]:
    env = {
        "LAMINA_OTLP_ENDPOINT": collector.endpoint,
        "LAMINA_TRACE_SAMPLE_RATE": "1",
        # Export within a tenth of a second rather than the SDK's default five.
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "LAMINA_ASYNC_RETRY_SCALE": "0.01",
    }
    instance = LaminaServer(tmp_path_factory.mktemp("traced") / "data", env=env).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def client(traced: LaminaServer) -> Iterator[Any]:
    lambda_client = traced.client()
    yield lambda_client
    lambda_client.close()


@pytest.fixture
def function(client: Any) -> Callable[..., str]:
    """A new function (Python unless `Runtime` says otherwise) with the given tracing mode."""

    def make(mode: str = "PassThrough", handler: str = "app.trace", **overrides: Any) -> str:
        name = f"traced-{uuid.uuid4().hex[:12]}"
        client.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=ROLE,
            Handler=handler,
            Code={"ZipFile": make_zip({"app.py": HANDLERS})},
            TracingConfig={"Mode": mode},
            **overrides,
        )
        return name

    return make


def invoke_with_header(
    client: Any, name: str, header: str | None = None, **params: Any
) -> dict[str, Any]:
    """Invoke, sending `header` as X-Amzn-Trace-Id (not a member of boto3's Invoke input)."""

    def add_header(request: Any, **_: Any) -> None:
        if header is not None:
            request.headers["X-Amzn-Trace-Id"] = header

    hook = f"trace-header-{uuid.uuid4().hex}"
    client.meta.events.register("before-sign.lambda.Invoke", add_header, unique_id=hook)
    try:
        response: dict[str, Any] = client.invoke(FunctionName=name, **params)
    finally:
        client.meta.events.unregister("before-sign.lambda.Invoke", unique_id=hook)
    response["body"] = response["Payload"].read()
    return response


def seen(response: dict[str, Any]) -> str:
    """The _X_AMZN_TRACE_ID the function saw."""
    return str(json.loads(response["body"])["trace"])


def names(spans: list[dict[str, Any]]) -> list[str]:
    return sorted(span["name"] for span in spans)


def by_name(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {span["name"]: span for span in spans}


# ------------------------------------------------------------------- what functions see


def test_passthrough_function_gets_the_callers_header_unchanged(
    client: Any, function: Callable[..., str]
) -> None:
    name = function()
    given = f"Root={new_root()};Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:0"
    assert seen(invoke_with_header(client, name, given)) == given


def test_the_header_reaches_c_code_and_child_processes_as_it_changes(
    client: Any, function: Callable[..., str]
) -> None:
    # The runtime sets the variable with putenv(3) into buffers of its own (setenv(3) would
    # keep every value for the life of the process); each reader must see each new value.
    name = function(handler="app.everywhere")
    lineages = ";".join(f"Lineage={index:08x}:0" for index in range(40))
    for given in (
        f"Root={new_root()};Parent=53995c3f42cd8ad8;Sampled=1",
        f"Root={new_root()};Sampled=0;{lineages}",
        f"Root={new_root()}",
    ):
        seen_by = json.loads(invoke_with_header(client, name, given)["body"])
        assert seen_by == {"trace": given, "c": given, "child": given}


def test_without_a_header_a_new_root_is_generated(
    client: Any, function: Callable[..., str]
) -> None:
    passthrough, active = function(), function("Active")
    first, second = (
        seen(invoke_with_header(client, passthrough)),
        seen(invoke_with_header(client, passthrough)),
    )
    # PassThrough: a root and nothing else, as Lambda sends since it stopped sampling there.
    assert re.fullmatch(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24}", first)
    assert first != second
    epoch = int(first[7:15], 16)
    assert abs(epoch - time.time()) < 300
    header = fields(seen(invoke_with_header(client, active)))
    assert ROOT.fullmatch(header["Root"]) and SPAN_ID.fullmatch(header["Parent"])
    assert header["Sampled"] == "1"


@pytest.mark.skipif(NODE is None, reason="no Node.js 20 or 22 on this host")
def test_node_function_sees_the_callers_root(client: Any) -> None:
    name = f"traced-node-{uuid.uuid4().hex[:12]}"
    client.create_function(
        FunctionName=name,
        Runtime=NODE,
        Role=ROLE,
        Handler="index.trace",
        Code={"ZipFile": make_zip({"index.js": NODE_HANDLER})},
        TracingConfig={"Mode": "Active"},
    )
    root = new_root()
    header = fields(
        seen(invoke_with_header(client, name, f"Root={root};Parent=53995c3f42cd8ad8;Sampled=1"))
    )
    assert header["Root"] == root and header["Sampled"] == "1"
    assert header["Parent"] != "53995c3f42cd8ad8"
    # A later invocation of the same (warm) process sees its own header, not the last one's.
    assert fields(seen(invoke_with_header(client, name)))["Root"] != root


# ----------------------------------------------------------------- Active: spans, REPORT


def test_active_invocations_continue_the_callers_trace(
    client: Any, function: Callable[..., str], collector: OtlpCollector
) -> None:
    name = function("Active")
    root, caller_span = new_root(), "53995c3f42cd8ad8"
    cold = invoke_with_header(
        client, name, f"Root={root};Parent={caller_span};Lineage=a87bd80c:0", LogType="Tail"
    )
    header = fields(seen(cold))
    # The caller's root and lineage; a new parent (the invocation span); sampled by Lamina.
    assert header["Root"] == root and header["Lineage"] == "a87bd80c:0"
    assert header["Sampled"] == "1" and header["Parent"] != caller_span
    segment = header["Parent"]
    assert f"\nXRAY TraceId: {root}\tSegmentId: {segment}\tSampled: true\t" in log_tail(cold)

    spans = collector.wait_for(lambda spans: len(spans) == 4, otel_id(root))
    # A synchronous call waits in no queue: no "Dwell Time", as on AWS.
    assert names(spans) == sorted([name, "Placement", "Initialization", "Invocation"])
    named = by_name(spans)
    top = named[name]
    assert top["parent_span_id"] == caller_span and top["kind"] == SERVER_KIND
    assert named["Invocation"]["span_id"] == segment
    for child in ("Placement", "Initialization", "Invocation"):
        assert named[child]["parent_span_id"] == top["span_id"]
        assert top["start_ns"] <= named[child]["start_ns"] <= named[child]["end_ns"]
        assert named[child]["end_ns"] <= top["end_ns"]
    assert named["Placement"]["end_ns"] <= named["Initialization"]["start_ns"]
    assert named["Initialization"]["end_ns"] <= named["Invocation"]["start_ns"]
    request_id = cold["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    attributes = top["attributes"]
    assert attributes["faas.name"] == name and attributes["faas.version"] == "$LATEST"
    assert attributes["faas.invocation_id"] == request_id
    assert attributes["faas.coldstart"] is True
    assert attributes["cloud.region"] == "us-east-1"
    assert attributes["aws.xray.trace_id"] == root
    assert top["resource"]["service.name"] == name
    assert top["resource"]["cloud.platform"] == "aws_lambda"

    # Warm: the same shape without an Initialization span.
    warm_root = new_root()
    warm = invoke_with_header(client, name, f"Root={warm_root}")
    assert fields(seen(warm))["Root"] == warm_root
    spans = collector.wait_for(lambda spans: len(spans) == 3, otel_id(warm_root))
    assert names(spans) == sorted([name, "Placement", "Invocation"])
    top = by_name(spans)[name]
    assert top["attributes"]["faas.coldstart"] is False
    # No caller span: the invocation's span is the trace's root.
    assert top["parent_span_id"] == ""


def test_a_function_error_marks_the_spans(
    client: Any, function: Callable[..., str], collector: OtlpCollector
) -> None:
    name = function("Active", handler="app.fail")
    root = new_root()
    response = invoke_with_header(client, name, f"Root={root}")
    assert response["FunctionError"] == "Unhandled"
    spans = by_name(collector.wait_for(lambda spans: len(spans) == 4, otel_id(root)))
    for span in (spans[name], spans["Invocation"]):
        assert span["status_code"] == STATUS_ERROR
    assert spans[name]["attributes"]["error.type"] == "Unhandled"


def test_unsampled_and_passthrough_invocations_record_nothing(
    client: Any, function: Callable[..., str], collector: OtlpCollector
) -> None:
    passthrough, active = function(), function("Active")
    passthrough_root, unsampled_root, barrier_root = new_root(), new_root(), new_root()
    # A sampled caller does not make a PassThrough function record anything...
    response = invoke_with_header(
        client, passthrough, f"Root={passthrough_root};Sampled=1", LogType="Tail"
    )
    assert "XRAY" not in log_tail(response)
    # ...and an Active one follows a caller's decision not to sample, with a parent of its own.
    given = f"Root={unsampled_root};Parent=53995c3f42cd8ad8;Sampled=0"
    response = invoke_with_header(client, active, given, LogType="Tail")
    header = fields(seen(response))
    assert header["Sampled"] == "0" and header["Parent"] != "53995c3f42cd8ad8"
    assert "XRAY" not in log_tail(response)
    # Spans leave in order: once a later invocation's have arrived, earlier ones would have.
    invoke_with_header(client, active, f"Root={barrier_root}")
    collector.wait_for(lambda spans: len(spans) >= 3, otel_id(barrier_root))
    received = {span["trace_id"] for span in collector.spans()}
    assert otel_id(passthrough_root) not in received
    assert otel_id(unsampled_root) not in received


# ------------------------------------------------------------- other ways in: async, URLs


def test_an_event_invocation_keeps_the_callers_trace(
    client: Any,
    function: Callable[..., str],
    collector: OtlpCollector,
    traced: LaminaServer,
) -> None:
    active = function("Active", handler="app.log_trace")
    root = new_root()
    response = invoke_with_header(
        client, active, f"Root={root};Parent=53995c3f42cd8ad8", InvocationType="Event"
    )
    assert response["StatusCode"] == 202
    spans = by_name(collector.wait_for(lambda spans: len(spans) == 5, otel_id(root)))
    assert spans[active]["parent_span_id"] == "53995c3f42cd8ad8"
    # The event's time in the queue comes first: from its acceptance to its admission.
    assert sorted(spans) == sorted(
        [active, "Dwell Time", "Placement", "Initialization", "Invocation"]
    )
    assert spans["Dwell Time"]["end_ns"] <= spans["Placement"]["start_ns"]

    # PassThrough: the function's own log shows the caller's header, unchanged.
    passthrough = function(handler="app.log_trace")
    given = f"Root={new_root()};Parent=53995c3f42cd8ad8;Sampled=1"
    invoke_with_header(client, passthrough, given, InvocationType="Event")
    logs = traced.client("logs")
    try:
        messages = logged(logs, f"/aws/lambda/{passthrough}", '"TRACE="')
    finally:
        logs.close()
    assert messages == [f"TRACE={given}"]


def logged(logs: Any, group: str, pattern: str, timeout: float = 20.0) -> list[str]:
    """The messages of `group` matching `pattern`, once there are any."""

    def messages() -> list[str]:
        try:
            events = logs.filter_log_events(logGroupName=group, filterPattern=pattern)["events"]
        except logs.exceptions.ResourceNotFoundException:
            return []  # the group appears with the function's first line
        return [event["message"].strip() for event in events]

    return wait_until(messages, timeout=timeout, message=f"nothing matching {pattern} in {group}")


def test_a_function_url_request_is_traced_like_an_invoke(
    client: Any,
    function: Callable[..., str],
    collector: OtlpCollector,
    traced: LaminaServer,
) -> None:
    name = function("Active", handler="app.url")
    allow_public(client, name)
    url = client.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    root = new_root()
    reply = fetch(traced, url, headers={"X-Amzn-Trace-Id": f"Root={root}"})
    assert reply.status == 200
    assert reply.headers["x-amzn-Trace-Id"] == f"Root={root}"
    assert fields(reply.body.decode())["Root"] == root
    collector.wait_for(lambda spans: len(spans) == 4, otel_id(root))
    # Without a header the front door starts a trace, which the function continues.
    reply = fetch(traced, url)
    generated = fields(reply.headers["x-amzn-Trace-Id"])
    assert list(generated) == ["Root"]
    assert fields(reply.body.decode())["Root"] == generated["Root"]
