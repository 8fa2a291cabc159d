"""CloudWatch Logs, the service: groups, streams, retention and events over the log store.

One method per operation of the subset Lamina serves; each takes and returns the botocore
model's members, so `lamina.api.logs` only mounts them. Reads flush the engine's pending
lines first, so an invocation's logs can be read as soon as the invocation has returned.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lamina.arns import Account
from lamina.errors import InvalidParameter
from lamina.observability import log_queries
from lamina.observability.filter_pattern import compile_pattern
from lamina.observability.log_sink import StoreLogSink
from lamina.observability.put_events import check_batch
from lamina.settings import Settings
from lamina.store.protocols.logs import DAY_MS, LogGroup, LogStore, LogStream

RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)  # fmt: skip
_DEFAULT_EVENTS = 10_000
_DEFAULT_DESCRIBE = 50
_MB = 1024 * 1024


@dataclass(frozen=True)
class Logs:
    """The log store and the engine's sink over it."""

    store: LogStore
    sink: StoreLogSink

    def close(self) -> None:
        self.sink.close()
        self.store.close()


def open_logs(settings: Settings, store: LogStore) -> Logs:
    """The engine's sink over the store."""
    return Logs(
        store, StoreLogSink(store, max_invocation_bytes=settings.log_invocation_max_mb * _MB)
    )


def _page_token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def _read_page_token(token: str | None) -> str | None:
    if token is None:
        return None
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidParameter("The specified nextToken is invalid.") from None


class LogsService:
    """One method per CloudWatch Logs operation, over the store."""

    def __init__(self, store: LogStore, sink: StoreLogSink, account: Account) -> None:
        self._store = store
        self._sink = sink
        self._account = account

    def operations(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any] | None]]:
        handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any] | None]] = {
            "CreateLogGroup": self.create_log_group,
            "DeleteLogGroup": self.delete_log_group,
            "DescribeLogGroups": self.describe_log_groups,
            "CreateLogStream": self.create_log_stream,
            "DeleteLogStream": self.delete_log_stream,
            "DescribeLogStreams": self.describe_log_streams,
            "PutRetentionPolicy": self.put_retention_policy,
            "DeleteRetentionPolicy": self.delete_retention_policy,
            "PutLogEvents": self.put_log_events,
            "GetLogEvents": self.get_log_events,
            "FilterLogEvents": self.filter_log_events,
        }
        return dict(handlers)

    # ----------------------------------------------------------------------- groups

    def create_log_group(self, params: dict[str, Any]) -> None:
        self._sink.flush()  # a function's pending first lines may have created it already
        self._store.create_group(params["logGroupName"])

    def delete_log_group(self, params: dict[str, Any]) -> None:
        self._sink.flush()
        self._store.delete_group(params["logGroupName"])

    def describe_log_groups(self, params: dict[str, Any]) -> dict[str, Any]:
        prefix, pattern = params.get("logGroupNamePrefix"), params.get("logGroupNamePattern")
        if prefix and pattern:
            raise InvalidParameter(
                "LogGroup name prefix and LogGroup name pattern are mutually exclusive parameters."
            )
        limit = params.get("limit") or _DEFAULT_DESCRIBE
        wanted = {self._group_name(item) for item in params.get("logGroupIdentifiers") or []}
        after = _read_page_token(params.get("nextToken"))
        self._sink.flush()
        found: list[LogGroup] = []
        # A pattern is a case-insensitive substring; scan the name index a batch at a time.
        while len(found) <= limit:
            batch = self._store.groups(after, 500, prefix)
            if not batch:
                break
            for group in batch:
                if pattern and pattern.lower() not in group.name.lower():
                    continue
                if wanted and group.name not in wanted:
                    continue
                found.append(group)
            after = batch[-1].name
        result: dict[str, Any] = {"logGroups": [self._group_view(g) for g in found[:limit]]}
        if len(found) > limit:
            result["nextToken"] = _page_token(found[limit - 1].name)
        return result

    def _group_view(self, group: LogGroup) -> dict[str, Any]:
        arn = self._group_arn(group.name)
        view: dict[str, Any] = {
            "logGroupName": group.name,
            "creationTime": group.created_ms,
            "metricFilterCount": 0,
            "arn": f"{arn}:*",
            "logGroupArn": arn,
            "storedBytes": group.stored_bytes,
            "logGroupClass": "STANDARD",
        }
        if group.retention_days is not None:
            view["retentionInDays"] = group.retention_days
        return view

    def _group_arn(self, name: str) -> str:
        return f"arn:aws:logs:{self._account.region}:{self._account.account_id}:log-group:{name}"

    def put_retention_policy(self, params: dict[str, Any]) -> None:
        days = params["retentionInDays"]
        if days not in RETENTION_DAYS:
            allowed = ", ".join(str(value) for value in RETENTION_DAYS)
            raise InvalidParameter(
                f"1 validation error detected: Value '{days}' at 'retentionInDays' failed to "
                f"satisfy constraint: Member must satisfy enum value set: [{allowed}]"
            )
        self._sink.flush()
        self._store.set_retention(params["logGroupName"], days)

    def delete_retention_policy(self, params: dict[str, Any]) -> None:
        self._store.set_retention(params["logGroupName"], None)

    # ---------------------------------------------------------------------- streams

    def create_log_stream(self, params: dict[str, Any]) -> None:
        self._sink.flush()
        self._store.create_stream(params["logGroupName"], params["logStreamName"])

    def delete_log_stream(self, params: dict[str, Any]) -> None:
        self._sink.flush()
        self._store.delete_stream(params["logGroupName"], params["logStreamName"])

    def describe_log_streams(self, params: dict[str, Any]) -> dict[str, Any]:
        self._sink.flush()
        group = self._store.group(self._target_group(params))
        prefix = params.get("logStreamNamePrefix")
        order = params.get("orderBy") or "LogStreamName"
        if order == "LastEventTime" and prefix:
            raise InvalidParameter("Cannot order by LastEventTime with a logStreamNamePrefix.")
        streams = [s for s in self._store.streams(group.id) if s.name.startswith(prefix or "")]
        if order == "LastEventTime":
            streams.sort(key=lambda s: (s.last_event_ms or 0, s.name))
        if params.get("descending"):
            streams.reverse()
        offset = int(_read_page_token(params.get("nextToken")) or 0)
        limit = params.get("limit") or _DEFAULT_DESCRIBE
        page = streams[offset : offset + limit]
        result: dict[str, Any] = {"logStreams": [self._stream_view(group, s) for s in page]}
        if offset + limit < len(streams):
            result["nextToken"] = _page_token(str(offset + limit))
        return result

    def _stream_view(self, group: LogGroup, stream: LogStream) -> dict[str, Any]:
        view: dict[str, Any] = {
            "logStreamName": stream.name,
            "creationTime": stream.created_ms,
            "arn": f"{self._group_arn(group.name)}:log-stream:{stream.name}",
            # Deprecated for streams by AWS in 2019 and always reported as zero.
            "storedBytes": 0,
        }
        for member, value in (
            ("firstEventTimestamp", stream.first_event_ms),
            ("lastEventTimestamp", stream.last_event_ms),
            ("lastIngestionTime", stream.last_ingestion_ms),
        ):
            if value is not None:
                view[member] = value
        return view

    # ----------------------------------------------------------------------- events

    def put_log_events(self, params: dict[str, Any]) -> dict[str, Any]:
        self._sink.flush()
        group = self._store.group(params["logGroupName"])
        stream = self._store.stream(group.id, params["logStreamName"])
        now = int(time.time() * 1000)
        oldest = now - group.retention_days * DAY_MS if group.retention_days else None
        accepted, rejected = check_batch(params["logEvents"], now, oldest)
        if accepted:
            lines = [(event["timestamp"], event["message"]) for event in accepted]
            self._store.append([(group.name, stream.name, lines)], create=False)
        result: dict[str, Any] = {"nextSequenceToken": f"{time.time_ns():056d}"}
        if rejected:
            result["rejectedLogEventsInfo"] = rejected
        return result

    def get_log_events(self, params: dict[str, Any]) -> dict[str, Any]:
        # First: a function's first lines create its group and stream.
        self._sink.flush()
        group = self._store.group(self._target_group(params))
        stream = self._store.stream(group.id, params["logStreamName"])
        events, forward, backward = log_queries.stream_page(
            self._store,
            stream.id,
            params.get("startTime"),
            params.get("endTime"),
            params.get("nextToken"),
            params.get("limit") or _DEFAULT_EVENTS,
            bool(params.get("startFromHead")),
        )
        return {
            "events": [
                {"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.ingestion_time}
                for e in events
            ],
            "nextForwardToken": forward,
            "nextBackwardToken": backward,
        }

    def filter_log_events(self, params: dict[str, Any]) -> dict[str, Any]:
        self._sink.flush()
        group = self._store.group(self._target_group(params))
        names, prefix = params.get("logStreamNames"), params.get("logStreamNamePrefix")
        if names and prefix:
            raise InvalidParameter(
                "logStreamNames and logStreamNamePrefix are mutually exclusive parameters."
            )
        pattern = compile_pattern(params.get("filterPattern"))
        streams = {s.id: s.name for s in self._store.streams(group.id)}
        selected: list[int] | None = None
        if names:
            selected = [sid for sid, name in streams.items() if name in names]
        elif prefix:
            selected = [sid for sid, name in streams.items() if name.startswith(prefix)]
        events, next_token = log_queries.search(
            self._store,
            group.id,
            selected,
            params.get("startTime"),
            params.get("endTime"),
            pattern,
            params.get("nextToken"),
            params.get("limit") or _DEFAULT_EVENTS,
        )
        result: dict[str, Any] = {
            "events": [
                {
                    "logStreamName": streams.get(e.stream_id, ""),
                    "timestamp": e.timestamp,
                    "message": e.message,
                    "ingestionTime": e.ingestion_time,
                    "eventId": log_queries.event_id(e),
                }
                for e in events
            ],
            "searchedLogStreams": [],
        }
        if next_token:
            result["nextToken"] = next_token
        return result

    # ---------------------------------------------------------------------- helpers

    def _target_group(self, params: dict[str, Any]) -> str:
        name, identifier = params.get("logGroupName"), params.get("logGroupIdentifier")
        if name and identifier:
            raise InvalidParameter(
                "LogGroup name and LogGroup identifier are mutually exclusive parameters."
            )
        if name:
            return str(name)
        if not identifier:
            raise InvalidParameter("Either logGroupName or logGroupIdentifier is required.")
        return self._group_name(identifier)

    @staticmethod
    def _group_name(identifier: str) -> str:
        """A group's name from its name or its ARN (`...:log-group:NAME` or `...:NAME:*`)."""
        if not identifier.startswith("arn:"):
            return identifier
        name = identifier.partition(":log-group:")[2]
        return name[:-2] if name.endswith(":*") else name
