"""The audit trail's records and how they are looked up.

A record is one API call as a JSON object (see `lamina.audit.record.entry`); a store keeps
them in the order they were appended and may drop the oldest to stay within its size bound.
The members a query looks at are `Time`, `Operation`, `Resource` and `Status`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol


def timestamp(moment: float) -> str:
    """UTC, millisecond precision, fixed width: records sort and compare by `Time` as strings."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def function_name(resource: str) -> str:
    """`my-fn`, `my-fn:prod`, `123456789012:function:my-fn` and full ARNs all give `my-fn`."""
    if ":function:" in resource:
        resource = resource.split(":function:", 1)[1]
    return resource.split(":", 1)[0]


@dataclass(frozen=True)
class AuditQuery:
    """Which records to return: the newest `limit` of those that match every filter."""

    since: str | None = None  # a `Time` value (see `timestamp`); records at or after it
    function: str | None = None  # a name or an ARN; matches any qualifier of the function
    operation: str | None = None  # case-insensitive
    failed: bool = False  # only records whose Status is 400 or more
    limit: int = 100

    def matches(self, record: Mapping[str, Any]) -> bool:
        if self.since is not None and record.get("Time", "") < self.since:
            return False
        if self.failed and int(record.get("Status") or 0) < 400:
            return False
        if self.operation is not None and (
            str(record.get("Operation")).lower() != self.operation.lower()
        ):
            return False
        if self.function is not None:
            resource = record.get("Resource")
            if not isinstance(resource, str):
                return False
            return function_name(resource) == function_name(self.function)
        return True

    def to_params(self) -> dict[str, str]:
        params = {"limit": str(self.limit)}
        if self.since is not None:
            params["since"] = self.since
        if self.function is not None:
            params["function"] = self.function
        if self.operation is not None:
            params["operation"] = self.operation
        if self.failed:
            params["failed"] = "true"
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> AuditQuery:
        limit = params.get("limit", "100")
        if not limit.isdigit() or int(limit) < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        return cls(
            since=params.get("since") or None,
            function=params.get("function") or None,
            operation=params.get("operation") or None,
            failed=params.get("failed", "").lower() in {"1", "true", "yes"},
            limit=int(limit),
        )


class AuditStore(Protocol):
    """Appended audit records, bounded in size, newest kept."""

    def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Store records durably: once this returns they survive a crash. Raises
        `StorageError` when they could not be stored. Called from one thread at a time."""
        ...

    def query(self, query: AuditQuery) -> list[dict[str, Any]]:
        """The newest matching records, oldest first; safe while another thread or process
        appends."""
        ...

    def close(self) -> None: ...
