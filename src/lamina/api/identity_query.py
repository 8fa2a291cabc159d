"""The query-protocol front IAM and STS share: the caller's access key for the handlers, and
the HTTP status AWS gives refusals their models do not list.

Who the caller is comes from the access key id in the signature's credential scope
(`lamina.control.sts` reads it); in enforced mode the signature was verified against that
key first.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from typing import Any

from botocore.model import OperationModel
from starlette.requests import Request
from starlette.responses import Response

from lamina.api.aws_query import QueryService
from lamina.errors import LaminaError

# The access key id the request being served was signed with ("" when unsigned).
current_access_key: ContextVar[str] = ContextVar("current_access_key", default="")

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


def access_key_of(request: Request) -> str:
    """The access key id a request was signed with: its Authorization header's credential,
    or a presigned query's `X-Amz-Credential`."""
    found = _CREDENTIAL.search(request.headers.get("authorization", ""))
    if found is not None:
        return found.group(1)
    return request.query_params.get("X-Amz-Credential", "").partition("/")[0]


class IdentityQueryService(QueryService):
    def decode(
        self, operation: OperationModel, request: Request, body: bytes, located: None
    ) -> dict[str, Any]:
        current_access_key.set(access_key_of(request))
        return super().decode(operation, request, body, located)

    def _error(self, error: LaminaError, request_id: str) -> Response:
        response = super()._error(error, request_id)
        # The shared mapping answers 400 for any client error its model does not list;
        # IAM and STS answer AccessDenied (and the signature refusals) with 403.
        if error.code not in self.model.shape_names and error.status == 403:
            response.status_code = 403
        return response
