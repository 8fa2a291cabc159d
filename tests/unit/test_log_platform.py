"""Platform lines in both formats, level filtering, and `lamina logs` rendering."""

from __future__ import annotations

import io
import json

import orjson
import pytest

from lamina.model.functions import LoggingConfig
from lamina.observability.platform_log import (
    TEXT_PLATFORM_LINES,
    TEXT_PLATFORM_LOG,
    ApplicationLevelFilter,
    JsonPlatformLog,
    environment_logging,
    record_level,
)
from lamina.observability.tail import Painter, parse_since, wants_colour
from lamina.sandbox.lifecycle import InitStarted, InvokeEnded, InvokeStarted, ShutDown
from lamina.sandbox.log_sink import MemoryLogSink
from lamina.sandbox.output import EnvironmentOutput


def test_text_lines_are_awss() -> None:
    assert TEXT_PLATFORM_LOG.start("r1", "$LATEST") == "START RequestId: r1 Version: $LATEST"
    assert TEXT_PLATFORM_LOG.end("r1", None, 1.0) == "END RequestId: r1"
    report = TEXT_PLATFORM_LOG.report("r1", 2.891, 3, 128, 49, 139.25, "timeout")
    assert report == (
        "REPORT RequestId: r1\tDuration: 2.89 ms\tBilled Duration: 3 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 49 MB\tInit Duration: 139.25 ms\tStatus: timeout\t"
    )


def test_json_records_have_lambdas_shape() -> None:
    platform = JsonPlatformLog("fn", "$LATEST", "on-demand", None)
    start = json.loads(platform.start("r1", "$LATEST") or "")
    assert start["type"] == "platform.start"
    assert start["record"] == {"requestId": "r1", "version": "$LATEST"}
    assert start["time"].endswith("Z") and len(start["time"]) == 24
    report = json.loads(platform.report("r1", 2.5, 3, 128, 49, 100.0) or "")
    assert report["type"] == "platform.report"
    assert report["record"] == {
        "requestId": "r1",
        "metrics": {
            "durationMs": 2.5,
            "billedDurationMs": 3,
            "memorySizeMB": 128,
            "maxMemoryUsedMB": 49,
            "initDurationMs": 100.0,
        },
        "status": "success",
    }
    init = json.loads(platform.init_start("python:3.12.lamina", "arn:x", "/usr/bin/python3") or "")
    assert init["record"]["functionName"] == "fn"
    assert init["record"]["initializationType"] == "on-demand"


def test_system_level_filters_platform_records() -> None:
    info = JsonPlatformLog("fn", "1", "on-demand", "INFO")
    assert info.end("r", None, 1.0) is None  # runtimeDone is DEBUG
    assert info.end("r", "timeout", 1.0) is not None  # ...unless the invocation failed
    warn = JsonPlatformLog("fn", "1", "on-demand", "WARN")
    assert warn.start("r", "1") is None
    assert warn.report("r", 1, 1, 128, 1, None) is None
    assert warn.report("r", 1, 1, 128, 1, None, "error", "Runtime.ExitError") is not None
    debug = JsonPlatformLog("fn", "1", "on-demand", "DEBUG")
    assert debug.end("r", None, 1.0) is not None


def test_application_level_filter() -> None:
    assert record_level('{"level": "DEBUG", "message": "x"}') == 2
    assert record_level('{"level": "warning"}') == 4
    assert record_level("plain text") == 3
    assert record_level('{"no": "level"}') == 3
    inner = MemoryLogSink()
    sink = ApplicationLevelFilter(inner, "WARN")
    sink.write_many(
        "g",
        "s",
        [(1, '{"level": "INFO", "m": 1}'), (2, '{"level": "ERROR", "m": 2}'), (3, "print")],
    )
    sink.write_platform("g", "s", 4, "platform line")
    assert [line[3] for line in inner.lines] == ['{"level": "ERROR", "m": 2}', "platform line"]


def test_text_functions_get_the_shared_sink_untouched() -> None:
    shared = MemoryLogSink()
    sink, lines = environment_logging(shared, LoggingConfig(), "fn", "$LATEST", "on-demand")
    assert sink is shared and lines is TEXT_PLATFORM_LINES
    json_config = LoggingConfig(log_format="JSON", application_log_level="DEBUG")
    sink, lines = environment_logging(shared, json_config, "fn", "$LATEST", "on-demand")
    assert isinstance(sink, ApplicationLevelFilter)
    output = EnvironmentOutput(sink, "/aws/lambda/fn", "stream")
    lines.environment_event(InvokeStarted("r1", "$LATEST"), output)
    record = orjson.loads(shared.lines[-1][3])
    assert record["type"] == "platform.start" and record["record"]["requestId"] == "r1"


def test_platform_lines_follow_the_lifecycle_in_aws_order() -> None:
    shared = MemoryLogSink()
    output = EnvironmentOutput(shared, "/aws/lambda/fn", "stream")
    for event in (
        InitStarted("python3.12", "/usr/bin/python3.12"),
        InvokeStarted("r1", "$LATEST"),
        InvokeEnded("r1", 2.5, 3, 128, 40, 12.0, None, None, None),
        ShutDown("env"),
    ):
        TEXT_PLATFORM_LINES.environment_event(event, output)
    written = [line[3] for line in shared.lines]
    assert written[0].startswith("INIT_START Runtime Version: python:3.12.lamina\t")
    assert written[1:3] == ["START RequestId: r1 Version: $LATEST", "END RequestId: r1"]
    assert written[3].startswith("REPORT RequestId: r1\tDuration: 2.50 ms\t")
    assert "Init Duration: 12.00 ms" in written[3]
    assert len(written) == 4  # shutdown writes no line, as on AWS
    assert output.tail().decode().splitlines() == written


def test_parse_since() -> None:
    assert parse_since("10m", now=1000.0) == 400_000
    assert parse_since("2h", now=10_000.0) == 2_800_000
    assert parse_since("2024-01-01T00:00:00+00:00") == 1_704_067_200_000
    with pytest.raises(ValueError, match="--since"):
        parse_since("yesterday")


def test_colours_errors_warnings_and_platform_lines() -> None:
    painter = Painter(colour=True)
    event = {"timestamp": 0, "logStreamName": "2024/01/01/[$LATEST]" + "d" * 32}
    error = painter.render({**event, "message": "[ERROR]\t...\tboom\rTraceback..."})
    assert "\x1b[1;31m[ERROR]" in error and "\n    Traceback" in error
    assert "[$LATEST]dddddddd" in error
    assert "\x1b[33m" in painter.render({**event, "message": "[WARNING] careful"})
    assert "\x1b[2mSTART" in painter.render({**event, "message": "START RequestId: r"})
    timeout = painter.render({**event, "message": "REPORT RequestId: r\tStatus: timeout\t"})
    assert "\x1b[1;31mREPORT" in timeout
    plain = Painter(colour=False).render({**event, "message": "[ERROR] boom"})
    assert "\x1b" not in plain and plain.startswith("1970-01-01T00:00:00.000Z ")


def test_colour_only_on_a_terminal_without_no_color() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert wants_colour("auto", Terminal(), {})
    assert not wants_colour("auto", Terminal(), {"NO_COLOR": "1"})
    assert not wants_colour("auto", io.StringIO(), {})
    assert wants_colour("always", io.StringIO(), {"NO_COLOR": "1"})
    assert not wants_colour("never", Terminal(), {})
