"""Platform lines in the function's log format, and log-level filtering for JSON functions.

With `LoggingConfig.LogFormat=Text` an environment writes AWS's text lines (`INIT_START`,
`START`, `END`, `REPORT`). With `JSON` it writes the `platform.*` records Lambda writes instead,
keeps those at or above `SystemLogLevel`, and drops application records below
`ApplicationLogLevel`. Both levels default to INFO, as Lambda's do once JSON is chosen.

System levels: `platform.initStart`, `platform.start` and `platform.report` are INFO and
`platform.runtimeDone` DEBUG; an invocation that did not succeed reports its `runtimeDone` and
`report` at WARN, so they survive every setting. (AWS documents a per-event table on its
log-level filtering page; this mapping follows it as far as it could be checked, and the
level of a successful `runtimeDone` is the least certain part.)
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import orjson

from lamina.constants import HEADER_TRACE_ID
from lamina.model.functions import LoggingConfig
from lamina.sandbox.lifecycle import (
    EnvironmentEvent,
    InitReported,
    InitStarted,
    InvokeEnded,
    InvokeStarted,
    RestoreReported,
    RestoreStarted,
)
from lamina.sandbox.log_sink import LogSink
from lamina.sandbox.output import EnvironmentOutput

# Ranks of the level names runtimes write; Python's logging says WARNING and CRITICAL.
LEVELS = {
    "TRACE": 1,
    "DEBUG": 2,
    "INFO": 3,
    "WARN": 4,
    "WARNING": 4,
    "ERROR": 5,
    "FATAL": 6,
    "CRITICAL": 6,
}
_INFO = LEVELS["INFO"]
_DEBUG = LEVELS["DEBUG"]
_WARN = LEVELS["WARN"]


class PlatformLog(Protocol):
    """Formats the platform's lines for one execution environment; None means filtered out."""

    def init_start(
        self, runtime_version: str, runtime_arn: str, interpreter: str
    ) -> str | None: ...

    def init_report(
        self, init_ms: float, status: str | None, error_type: str | None
    ) -> str | None: ...

    def restore_start(
        self, runtime_version: str, runtime_arn: str, interpreter: str
    ) -> str | None: ...

    def restore_report(self, restore_ms: float) -> str | None: ...

    def start(self, request_id: str, version: str) -> str | None: ...

    def end(self, request_id: str, status: str | None, duration_ms: float) -> str | None: ...

    def report(
        self,
        request_id: str,
        duration_ms: float,
        billed_ms: int,
        memory_mb: int,
        max_memory_mb: int,
        init_ms: float | None,
        status: str | None = None,
        error_type: str | None = None,
        xray: tuple[str, str] | None = None,
        restore_ms: float | None = None,
        billed_restore_ms: int | None = None,
    ) -> str | None: ...


class TextPlatformLog:
    """AWS's text lines; stateless, so one instance serves every environment."""

    def init_start(self, runtime_version: str, runtime_arn: str, interpreter: str) -> str:
        return (
            f"INIT_START Runtime Version: {runtime_version}\tRuntime Version ARN: "
            f"{runtime_arn}\tInterpreter: {interpreter}"
        )

    def init_report(self, init_ms: float, status: str | None, error_type: str | None) -> str:
        """A SnapStart version's init, at publish (where its REPORT would carry it)."""
        line = f"INIT_REPORT Init Duration: {init_ms:.2f} ms"
        if status:
            line += f"\tPhase: init\tStatus: {status}"
        if error_type:
            line += f"\tError Type: {error_type}"
        return line

    def restore_start(self, runtime_version: str, runtime_arn: str, interpreter: str) -> str:
        return (
            f"RESTORE_START Runtime Version: {runtime_version}\tRuntime Version ARN: "
            f"{runtime_arn}\tInterpreter: {interpreter}"
        )

    def restore_report(self, restore_ms: float) -> str:
        return f"RESTORE_REPORT Restore Duration: {restore_ms:.2f} ms"

    def start(self, request_id: str, version: str) -> str:
        return f"START RequestId: {request_id} Version: {version}"

    def end(self, request_id: str, status: str | None, duration_ms: float) -> str:
        return f"END RequestId: {request_id}"

    def report(
        self,
        request_id: str,
        duration_ms: float,
        billed_ms: int,
        memory_mb: int,
        max_memory_mb: int,
        init_ms: float | None,
        status: str | None = None,
        error_type: str | None = None,
        xray: tuple[str, str] | None = None,
        restore_ms: float | None = None,
        billed_restore_ms: int | None = None,
    ) -> str:
        line = (
            f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
            f"Billed Duration: {billed_ms} ms\tMemory Size: {memory_mb} MB\t"
            f"Max Memory Used: {max_memory_mb} MB\t"
        )
        if init_ms is not None:
            line += f"Init Duration: {init_ms:.2f} ms\t"
        if restore_ms is not None:
            line += (
                f"Restore Duration: {restore_ms:.2f} ms\t"
                f"Billed Restore Duration: {billed_restore_ms or 0} ms\t"
            )
        if status:
            line += f"Status: {status}\t"
        if error_type:
            line += f"Error Type: {error_type}\t"
        if xray is None:
            return line
        # Traced invocations: AWS ends the same REPORT event with a second line.
        return f"{line}\nXRAY TraceId: {xray[0]}\tSegmentId: {xray[1]}\tSampled: true\t"


TEXT_PLATFORM_LOG = TextPlatformLog()


def iso_time(epoch_ms: int) -> str:
    """`2024-05-01T12:00:00.123Z`, the timestamp form of Lambda's JSON records."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_ms // 1000)) + (
        f".{epoch_ms % 1000:03d}Z"
    )


class JsonPlatformLog:
    """The `platform.*` records of one environment, filtered by its system log level."""

    def __init__(
        self,
        function_name: str,
        version: str,
        initialization_type: str,
        system_level: str | None,
    ) -> None:
        self._function = function_name
        self._version = version
        self._initialization_type = initialization_type
        self._threshold = LEVELS.get((system_level or "INFO").upper(), _INFO)

    def _record(self, level: int, kind: str, record: dict[str, Any]) -> str | None:
        if level < self._threshold:
            return None
        now = int(time.time() * 1000)
        return orjson.dumps({"time": iso_time(now), "type": kind, "record": record}).decode()

    def init_start(self, runtime_version: str, runtime_arn: str, interpreter: str) -> str | None:
        return self._record(
            _INFO,
            "platform.initStart",
            {
                "initializationType": self._initialization_type,
                "phase": "init",
                "runtimeVersion": runtime_version,
                "runtimeVersionArn": runtime_arn,
                "functionName": self._function,
                "functionVersion": self._version,
            },
        )

    def init_report(self, init_ms: float, status: str | None, error_type: str | None) -> str | None:
        record: dict[str, Any] = {
            "initializationType": self._initialization_type,
            "phase": "init",
            "status": status or "success",
            "metrics": {"durationMs": round(init_ms, 3)},
        }
        if error_type:
            record["errorType"] = error_type
        return self._record(_INFO if status is None else _WARN, "platform.initReport", record)

    def restore_start(self, runtime_version: str, runtime_arn: str, interpreter: str) -> str | None:
        return self._record(
            _INFO,
            "platform.restoreStart",
            {
                "runtimeVersion": runtime_version,
                "runtimeVersionArn": runtime_arn,
                "functionName": self._function,
                "functionVersion": self._version,
            },
        )

    def restore_report(self, restore_ms: float) -> str | None:
        return self._record(
            _INFO,
            "platform.restoreReport",
            {"status": "success", "metrics": {"durationMs": round(restore_ms, 3)}},
        )

    def start(self, request_id: str, version: str) -> str | None:
        return self._record(_INFO, "platform.start", {"requestId": request_id, "version": version})

    def end(self, request_id: str, status: str | None, duration_ms: float) -> str | None:
        outcome = status or "success"
        return self._record(
            _DEBUG if outcome == "success" else _WARN,
            "platform.runtimeDone",
            {
                "requestId": request_id,
                "status": outcome,
                "metrics": {"durationMs": round(duration_ms, 3)},
            },
        )

    def report(
        self,
        request_id: str,
        duration_ms: float,
        billed_ms: int,
        memory_mb: int,
        max_memory_mb: int,
        init_ms: float | None,
        status: str | None = None,
        error_type: str | None = None,
        xray: tuple[str, str] | None = None,
        restore_ms: float | None = None,
        billed_restore_ms: int | None = None,
    ) -> str | None:
        metrics: dict[str, Any] = {
            "durationMs": round(duration_ms, 3),
            "billedDurationMs": billed_ms,
            "memorySizeMB": memory_mb,
            "maxMemoryUsedMB": max_memory_mb,
        }
        if init_ms is not None:
            metrics["initDurationMs"] = round(init_ms, 3)
        if restore_ms is not None:
            metrics["restoreDurationMs"] = round(restore_ms, 3)
            metrics["billedRestoreDurationMs"] = billed_restore_ms or 0
        record: dict[str, Any] = {
            "requestId": request_id,
            "metrics": metrics,
            "status": status or "success",
        }
        if error_type:
            record["errorType"] = error_type
        if xray is not None:
            record["tracing"] = {
                "spanId": xray[1],
                "type": HEADER_TRACE_ID,
                "value": f"Root={xray[0]};Parent={xray[1]};Sampled=1",
            }
        return self._record(_INFO if status is None else _WARN, "platform.report", record)


def record_level(message: str) -> int:
    """The level Lambda assigns an application line: its JSON `level`, else INFO."""
    if not message.startswith("{"):
        return _INFO
    try:
        document = orjson.loads(message)
    except orjson.JSONDecodeError:
        return _INFO
    level = document.get("level") if isinstance(document, dict) else None
    return LEVELS.get(level.upper(), _INFO) if isinstance(level, str) else _INFO


class ApplicationLevelFilter:
    """Wraps a sink for a JSON-format function: drops application records below its level.

    Runtimes filter their own loggers already; this catches what they cannot, such as a
    `print` of a JSON object that carries its own `"level"`, exactly as Lambda does.
    """

    def __init__(self, sink: LogSink, level: str) -> None:
        self._sink = sink
        self._threshold = LEVELS.get(level.upper(), _INFO)

    @property
    def saturated(self) -> bool:
        return self._sink.saturated

    def write_many(self, group: str, stream: str, entries: list[tuple[int, str]]) -> None:
        kept = [entry for entry in entries if record_level(entry[1]) >= self._threshold]
        if kept:
            self._sink.write_many(group, stream, kept)

    def write_platform(
        self, group: str, stream: str, timestamp: int, *messages: str | None
    ) -> None:
        self._sink.write_platform(group, stream, timestamp, *messages)

    def close(self) -> None:
        """The wrapped sink is shared by every environment; closing it is not ours to do."""


class PlatformLines:
    """The environment listener that writes the platform's lines into its output."""

    def __init__(self, platform: PlatformLog) -> None:
        self._platform = platform

    def environment_event(self, event: EnvironmentEvent, output: EnvironmentOutput) -> None:
        platform = self._platform
        if isinstance(event, InvokeStarted):
            output.platform(platform.start(event.request_id, event.version))
        elif isinstance(event, InvokeEnded):
            output.platform(
                platform.end(event.request_id, event.status, event.duration_ms),
                platform.report(
                    event.request_id,
                    event.duration_ms,
                    event.billed_ms,
                    event.memory_mb,
                    event.max_memory_mb,
                    event.init_ms,
                    event.status,
                    event.error_type,
                    event.xray,
                    event.restore_ms,
                    event.billed_restore_ms,
                ),
            )
        elif isinstance(event, InitStarted):
            label, arn = runtime_version(event.runtime)
            output.platform(platform.init_start(label, arn, event.interpreter))
        elif isinstance(event, RestoreStarted):
            label, arn = runtime_version(event.runtime)
            output.platform(platform.restore_start(label, arn, event.interpreter))
        elif isinstance(event, RestoreReported):
            output.platform(platform.restore_report(event.restore_ms))
        elif isinstance(event, InitReported):
            output.platform(platform.init_report(event.init_ms, event.status, event.error_type))


def runtime_version(runtime: str) -> tuple[str, str]:
    """The runtime version and its ARN, as INIT_START and RESTORE_START name them."""
    family, _, version = runtime.partition("python")
    label = f"python:{version}" if not family else runtime.replace("nodejs", "nodejs:")
    return f"{label}.lamina", f"arn:aws:lambda:::runtime:lamina-{runtime}"


TEXT_PLATFORM_LINES = PlatformLines(TEXT_PLATFORM_LOG)


def environment_logging(
    sink: LogSink,
    logging: LoggingConfig,
    function_name: str,
    version: str,
    initialization_type: str,
) -> tuple[LogSink, PlatformLines]:
    """The sink and platform-line listener for a new environment of this configuration.

    Text-format functions get the shared sink and listener untouched, so the default path
    costs nothing extra per invocation.
    """
    if logging.log_format != "JSON":
        return sink, TEXT_PLATFORM_LINES
    platform = JsonPlatformLog(
        function_name, version, initialization_type, logging.system_log_level
    )
    return ApplicationLevelFilter(sink, logging.application_log_level or "INFO"), PlatformLines(
        platform
    )
