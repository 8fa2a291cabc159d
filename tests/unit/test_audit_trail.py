"""The writer thread: nothing recorded is lost on close, invokes cost nothing unless wanted,
and the JSON-protocol services are audited like Lambda's own API."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from starlette.requests import Request

from lamina.api.aws_query import QueryService
from lamina.api.json_service import JsonService
from lamina.audit.record import ApiCall
from lamina.audit.trail import AuditTrail
from lamina.settings import Settings
from lamina.store.files.audit import FileAuditStore
from lamina.store.protocols.audit import AuditQuery


def request(headers: dict[str, str] | None = None, body: bytes = b"") -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("192.0.2.7", 40000),
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


class SlowLog(FileAuditStore):
    """Holds the writer thread in its first append until released."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, max_bytes=1 << 20)
        self.entered = threading.Event()
        self.release = threading.Event()

    def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        self.entered.set()
        assert self.release.wait(10)
        super().append(records)


def test_close_writes_everything_still_queued(tmp_path: Path) -> None:
    log = SlowLog(tmp_path)
    trail = AuditTrail(log, caller=None, include_invokes=False)
    trail.start()
    trail.record(ApiCall("lambda", operation="CreateFunction"), request(), "first", 201)
    assert log.entered.wait(10)
    # The writer is busy: these queue up behind it.
    for number in range(50):
        trail.record(ApiCall("lambda", operation="GetFunction"), request(), f"r{number}", 200)
    log.release.set()
    trail.close()
    found = FileAuditStore(tmp_path, 1).query(AuditQuery(limit=100))
    assert [item["RequestId"] for item in found] == ["first"] + [f"r{n}" for n in range(50)]
    assert found[0]["SourceIp"] == "192.0.2.7" and found[0]["Caller"] == "anonymous"


def test_invokes_only_when_asked(tmp_path: Path) -> None:
    for include, directory in ((False, tmp_path / "off"), (True, tmp_path / "on")):
        trail = AuditTrail(
            FileAuditStore(directory, 1 << 20), caller="AKID", include_invokes=include
        )
        trail.start()
        trail.record(ApiCall("lambda", operation="Invoke", verified=True), request(), "i", 200)
        trail.record(ApiCall("lambda", operation="ListFunctions"), request(), "l", 200)
        assert trail.flush()
        found = FileAuditStore(directory, 1).query(AuditQuery())
        trail.close()
        expected = [("i", "AKID"), ("l", "anonymous")] if include else [("l", "anonymous")]
        assert [(item["RequestId"], item["Caller"]) for item in found] == expected


def test_json_protocol_calls_are_audited(tmp_path: Path) -> None:
    trail = AuditTrail(FileAuditStore(tmp_path, 1 << 20), caller=None, include_invokes=False)
    model = botocore.session.get_session().get_service_model("events")

    def put_rule(params: dict[str, Any]) -> dict[str, Any]:
        return {"RuleArn": f"arn:aws:events:us-east-1:000000000000:rule/{params['Name']}"}

    service = JsonService(model, {"PutRule": put_rule}, None, trail)
    headers = {"x-amz-target": "AWSEvents.PutRule", "user-agent": "test-agent"}
    body = b'{"Name": "nightly", "ScheduleExpression": "rate(1 day)"}'

    async def calls() -> None:
        ok = await service.handle(request(headers, body))
        assert ok.status_code == 200
        unknown = {**headers, "x-amz-target": "AWSEvents.DeleteRule"}
        refused = await service.handle(request(unknown, b'{"Name": "nightly"}'))
        assert refused.status_code == 400

    trail.start()
    asyncio.run(calls())
    trail.close()
    found = FileAuditStore(tmp_path, 1).query(AuditQuery())
    assert [
        (item["Service"], item["Operation"], item["Resource"], item["Status"], item["ErrorCode"])
        for item in found
    ] == [
        ("events", "PutRule", "nightly", 200, None),
        ("events", None, None, 400, "UnknownOperationException"),
    ]
    assert found[0]["UserAgent"] == "test-agent"
    # Only the name is kept from the request: never its body.
    assert "rate(1 day)" not in (tmp_path / "audit-00000001.jsonl").read_text()


def test_query_protocol_calls_are_audited(tmp_path: Path) -> None:
    trail = AuditTrail(FileAuditStore(tmp_path, 1 << 20), caller=None, include_invokes=False)
    model = botocore.session.get_session().get_service_model("cloudwatch")

    def list_metrics(params: dict[str, Any]) -> dict[str, Any]:
        return {"Metrics": []}

    service = QueryService(model, {"ListMetrics": list_metrics}, None, trail)
    headers = {"content-type": "application/x-www-form-urlencoded"}

    async def calls() -> None:
        ok = await service.handle(
            request(headers, b"Action=ListMetrics&Version=2010-08-01&Namespace=AWS%2FLambda")
        )
        assert ok.status_code == 200
        assert ok.headers["x-amzn-requestid"]
        refused = await service.handle(request(headers, b"Action=PutMetricData"))
        assert refused.status_code == 400

    trail.start()
    asyncio.run(calls())
    trail.close()
    found = FileAuditStore(tmp_path, 1).query(AuditQuery())
    assert [
        (item["Service"], item["Operation"], item["Status"], item["ErrorCode"]) for item in found
    ] == [
        ("monitoring", "ListMetrics", 200, None),
        ("monitoring", None, 400, "UnknownOperationException"),
    ]


def test_settings() -> None:
    defaults = Settings.from_env({})
    assert (defaults.audit, defaults.audit_invokes, defaults.audit_max_mb) == (True, False, 100)
    chosen = Settings.from_env(
        {"LAMINA_AUDIT": "off", "LAMINA_AUDIT_INVOKES": "on", "LAMINA_AUDIT_MAX_MB": "5"}
    )
    assert (chosen.audit, chosen.audit_invokes, chosen.audit_max_mb) == (False, True, 5)
    with pytest.raises(ValueError, match="LAMINA_AUDIT_MAX_MB"):
        Settings.from_env({"LAMINA_AUDIT_MAX_MB": "0"}).check()
