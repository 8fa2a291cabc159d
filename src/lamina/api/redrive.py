"""`POST /_lamina/events/{function}/redrive`: send failed asynchronous events back to the queue.

The body names one event, `{"RequestId": "..."}`, or asks for all of the function's failed
events, `{"All": true}`; the answer lists the request ids redriven. Signed like the Lambda
API when the server requires signatures (as `/_lamina/mappings` is): a redrive runs code.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lamina.api.errors import error_response
from lamina.api.pipeline import verify_signature
from lamina.errors import InvalidParameterValue, InvalidRequestContent, LaminaError
from lamina.identity.sigv4 import SigV4Verifier
from lamina.invoke.asynchronous.dispatcher import AsyncDispatcher

REDRIVE_PATH = "/_lamina/events/{function:str}/redrive"


def redrive_route(dispatcher: AsyncDispatcher, verifier: SigV4Verifier | None) -> Route:
    async def redrive_events(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        body = await request.body()
        try:
            verify_signature(verifier, request, body)
            event_id = _event_id(body)
            # A name, a partial ARN (`name:alias`) or an ARN: events are kept per name.
            function = request.path_params["function"].split(":function:")[-1].split(":")[0]
            moved = await dispatcher.redrive(function, event_id)
        except LaminaError as error:
            return error_response(error, request_id)
        return JSONResponse({"FunctionName": function, "Redriven": moved})

    return Route(REDRIVE_PATH, redrive_events, methods=["POST"])


def _event_id(body: bytes) -> str | None:
    """The one event asked for, or None for all of them."""
    try:
        document: Any = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidRequestContent("Could not parse request body into json") from None
    if not isinstance(document, dict):
        raise InvalidRequestContent("Could not parse request body into json")
    event_id, everything = document.get("RequestId"), document.get("All") is True
    if (event_id is None) == (not everything):
        raise InvalidParameterValue("Give either RequestId (one event) or All: true.")
    if event_id is not None and (not isinstance(event_id, str) or not event_id):
        raise InvalidParameterValue("RequestId must be a non-empty string.")
    return event_id
