"""The CloudWatch Logs front (json 1.1, `X-Amz-Target: Logs_20140328.*`) over `LogsService`."""

from __future__ import annotations

from typing import Any

import botocore.session

from lamina.api.json_service import JsonService
from lamina.audit.trail import AuditTrail
from lamina.errors import InvalidParameter, LaminaError, ValidationError
from lamina.identity.sigv4 import SigV4Verifier
from lamina.observability.logs_service import LogsService

TARGET_PREFIX = "Logs_20140328"


class LogsJsonService(JsonService):
    """CloudWatch Logs reports shape violations as InvalidParameterException, not as
    ValidationException like Lambda; the message is the same."""

    def _error(self, error: LaminaError, request_id: str) -> Any:
        if isinstance(error, ValidationError):
            error = InvalidParameter(error.message)
        return super()._error(error, request_id)


def build_logs_service(
    service: LogsService, verifier: SigV4Verifier | None, audit: AuditTrail | None = None
) -> LogsJsonService:
    model = botocore.session.get_session().get_service_model("logs")
    return LogsJsonService(model, dict(service.operations()), verifier, audit)
