"""CloudWatch's metric reads (`monitoring`, namespace `AWS/Lambda`) on all three protocols.

botocore's model lists smithy-rpc-v2-cbor, json and query; an SDK speaks the first it
implements (boto3 and the AWS CLI today: JSON 1.0 with `X-Amz-Target:
GraniteServiceVersion20100801.<Op>`; older SDKs: the query form; newer ones: CBOR). The JSON
front is routed by target prefix like the other JSON services; `route` puts the query and
CBOR fronts in front of another endpoint, since they come without a target header.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import botocore.session
from botocore.model import ServiceModel
from starlette.requests import Request
from starlette.responses import Response

from lamina.api.aws_query import QueryService
from lamina.api.context import Handler
from lamina.api.json_service import JsonService
from lamina.api.pipeline import query_error_code
from lamina.api.rpcv2_cbor import QUERY_ERROR_HEADER, CborService
from lamina.audit.trail import AuditTrail
from lamina.errors import LaminaError
from lamina.identity.sigv4 import SigV4Verifier
from lamina.observability.cloudwatch import MetricReader

Endpoint = Callable[[Request], Awaitable[Response]]


def operations(reader: MetricReader) -> dict[str, Handler]:
    # Blocking handlers on purpose: they flush and read SQLite, so they run in a thread.
    return {
        "GetMetricStatistics": reader.get_metric_statistics,
        "GetMetricData": reader.get_metric_data,
        "ListMetrics": reader.list_metrics,
    }


class _QueryCompatibleJson(JsonService):
    """JSON errors with the query-era code in `x-amzn-query-error`, as CloudWatch sends
    them, so SDKs report `InvalidParameterValue` whichever protocol they use."""

    def _error(self, error: LaminaError, request_id: str) -> Response:
        response = super()._error(error, request_id)
        code, _, fault = query_error_code(error, self.model)
        response.headers[QUERY_ERROR_HEADER] = f"{code};{fault}"
        return response


class CloudWatchApi:
    """The three protocol fronts over one set of handlers."""

    def __init__(
        self,
        reader: MetricReader,
        verifier: SigV4Verifier | None,
        audit: AuditTrail | None = None,
    ) -> None:
        model: ServiceModel = botocore.session.get_session().get_service_model("cloudwatch")
        handlers: dict[str, Any] = operations(reader)
        self.target_prefix: str = model.metadata["targetPrefix"]
        # The service name SigV4 signs query-protocol calls with ("monitoring").
        self.signing_name: str = model.signing_name
        self.json = _QueryCompatibleJson(model, handlers, verifier, audit)
        self.query = QueryService(model, handlers, verifier, audit)
        self.cbor = CborService(model, handlers, verifier, audit)
