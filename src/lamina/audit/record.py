"""What one API call leaves in the audit trail, and the wire literals of an entry."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lamina.store.protocols.audit import timestamp

ANONYMOUS = "anonymous"
# Where a server serves its audit log (see audit.endpoint).
ENDPOINT_PATH = "/_lamina/audit"

# Data events in CloudTrail's terms (invocations, and reading or writing log events):
# recorded only when LAMINA_AUDIT_INVOKES is on.
DATA_OPERATIONS = frozenset(
    {
        "Invoke",
        "InvokeAsync",
        "InvokeWithResponseStream",
        "PutLogEvents",
        "GetLogEvents",
        "FilterLogEvents",
    }
)

# The members that name what a call acted on, first match wins. Only this one value is kept
# from a request: bodies, environment variables and code never reach the log.
RESOURCE_MEMBERS = (
    "FunctionName",
    "LayerName",
    "CodeSigningConfigArn",
    "Resource",
    "UUID",
    "Arn",
    "ResourceArn",
    "ResourceARN",
    "Name",
    "logGroupName",
)
_MAX_FIELD = 256


@dataclass(slots=True)
class ApiCall:
    """What the API layer learned about one request while serving it."""

    service: str
    started: float = field(default_factory=time.time)
    operation: str | None = None
    # The request's members (only the path's until the body is parsed); see RESOURCE_MEMBERS.
    params: Mapping[str, Any] | None = None
    # Whether the request carried a valid signature (the configured root key's, or in
    # enforced mode an IAM user's or an STS session's).
    verified: bool = False
    # The verified signer's access key id (enforced mode: users' and sessions' keys sign too).
    caller: str | None = None
    error: str | None = None


def resource_of(params: Mapping[str, Any] | None) -> str | None:
    if not params:
        return None
    for member in RESOURCE_MEMBERS:
        value = params.get(member)
        if isinstance(value, str) and value:
            return value[:_MAX_FIELD]
    return None


def entry(
    call: ApiCall,
    caller: str,
    source_ip: str | None,
    user_agent: str | None,
    request_id: str,
    status: int,
) -> dict[str, Any]:
    return {
        "Time": timestamp(call.started),
        "RequestId": request_id,
        "Caller": caller,
        "SourceIp": source_ip,
        "UserAgent": user_agent[:_MAX_FIELD] if user_agent else None,
        "Service": call.service,
        "Operation": call.operation,
        "Resource": resource_of(call.params),
        "Status": status,
        "ErrorCode": call.error,
        "DurationMs": round((time.time() - call.started) * 1000, 1),
    }
