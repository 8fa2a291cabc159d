"""Turning `LaminaError`s into AWS-shaped responses, in one place."""

from __future__ import annotations

from typing import Any

import orjson
from botocore.model import ServiceModel
from starlette.responses import Response

from lamina.constants import HEADER_ERROR_TYPE, HEADER_REQUEST_ID
from lamina.errors import LaminaError


def _message_key(model: ServiceModel | None, code: str) -> str:
    """ResourceNotFoundException says `Message`, most others `message`: follow the model.
    Errors the model does not describe that AWS answers from its front door (AccessDenied)
    say `Message`."""
    if model is not None and code in model.shape_names:
        members = model.shape_for(code).members
        if "Message" in members:
            return "Message"
        return "message"
    return "Message" if code == "AccessDeniedException" else "message"


def error_response(
    error: LaminaError, request_id: str, model: ServiceModel | None = None
) -> Response:
    body: dict[str, Any] = {}
    if error.error_type is not None:
        body["Type"] = error.error_type
    if error.message:
        body[_message_key(model, error.code)] = error.message
    body.update(error.fields)
    headers = {
        HEADER_ERROR_TYPE: error.code,
        HEADER_REQUEST_ID: request_id,
        **error.headers,
    }
    return Response(
        orjson.dumps(body),
        status_code=error.status,
        headers=headers,
        media_type="application/json",
    )
