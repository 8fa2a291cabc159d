"""The service gateway's own refusals, each in the protocol of the service that was called.

A boto3 or JS SDK client parses errors by its service's protocol: S3 reads an XML `<Error>`,
query services an `<ErrorResponse>`, JSON services `x-amzn-ErrorType` and `__type`, CBOR
services a CBOR map. A refusal in any other shape would reach the function's code as an
unparseable response, so each is written in the shape its caller expects.
"""

from __future__ import annotations

import json
from xml.sax.saxutils import escape

import cbor2
from starlette.responses import Response

from lamina.aws.upstreams import Service
from lamina.errors import (
    AccessDenied,
    ExpiredToken,
    IncompleteSignature,
    InvalidSignature,
    LaminaError,
)
from lamina.errors import UnrecognizedClient as UnrecognizedClientError

# Lamina's codes for cases AWS has no counterpart of (no upstream for a service, a loop,
# an unreachable upstream). 501 and 508 are not retried by the SDKs; 502 is (an upstream
# that is down may come back).
NOT_CONFIGURED = ("NotImplemented", 501)
LOOP = ("LoopDetected", 508)
UNREACHABLE = ("BadGateway", 502)
# Every connection to the upstream stayed busy for the pool's wait: retried by the SDKs.
UNAVAILABLE = ("ServiceUnavailable", 503)
S3_UNAVAILABLE = ("SlowDown", 503)
# A request target the gateway will not forward (`*`, dot segments): S3's code for a URI
# it cannot parse, used for every service.
BAD_PATH = ("InvalidURI", 400)
# S3's refusal of a bucket name it does not accept.
INVALID_BUCKET = ("InvalidBucketName", 400, "The specified bucket is not valid.")

# S3's names and words for the signature refusals, which differ from the other services'.
_S3_REFUSALS: dict[type[LaminaError], tuple[str, int, str]] = {
    UnrecognizedClientError: (
        "InvalidAccessKeyId",
        403,
        "The AWS Access Key Id you provided does not exist in our records.",
    ),
    InvalidSignature: (
        "SignatureDoesNotMatch",
        403,
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    ),
    ExpiredToken: ("ExpiredToken", 400, "The provided token has expired."),
    IncompleteSignature: ("AccessDenied", 403, "Access Denied"),
}
# The query protocol's names for the same refusals.
_QUERY_REFUSALS = {
    "UnrecognizedClientException": "InvalidClientTokenId",
    "InvalidSignatureException": "SignatureDoesNotMatch",
    "ExpiredTokenException": "ExpiredToken",
    "IncompleteSignatureException": "IncompleteSignature",
}


def refusal(service: Service, error: LaminaError, request_id: str) -> Response:
    """A signature check's refusal, named as the called service names it."""
    if service.protocol == "rest-xml":
        if isinstance(error, AccessDenied):
            # S3 names an IAM denial with the same sentence as the other services.
            return service_error(service, "AccessDenied", 403, error.message, request_id)
        known = _S3_REFUSALS.get(type(error))
        if known is not None:
            code, status, message = known
            return service_error(service, code, status, message, request_id)
    if service.protocol in {"query", "ec2"}:
        code = _QUERY_REFUSALS.get(error.code, error.code.removesuffix("Exception"))
        return service_error(service, code, error.status, error.message, request_id)
    return service_error(service, error.code, error.status, error.message, request_id)


def unavailable(service: Service, message: str, request_id: str) -> Response:
    """A 503 the SDKs retry, named as the called service names being overloaded."""
    code, status = S3_UNAVAILABLE if service.protocol == "rest-xml" else UNAVAILABLE
    return service_error(service, code, status, message, request_id)


def service_error(
    service: Service, code: str, status: int, message: str, request_id: str
) -> Response:
    """An error response in `service`'s protocol."""
    protocol = service.protocol
    if protocol == "rest-xml":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        )
        headers = {"x-amz-request-id": request_id}
        return Response(body, status, headers, media_type="application/xml")
    if protocol == "ec2":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{escape(code)}</Code>"
            f"<Message>{escape(message)}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        )
        return Response(body, status, media_type="text/xml")
    if protocol == "query":
        fault = "Receiver" if status >= 500 else "Sender"
        body = (
            f"<ErrorResponse><Error><Type>{fault}</Type><Code>{escape(code)}</Code>"
            f"<Message>{escape(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return Response(body, status, {"x-amzn-RequestId": request_id}, media_type="text/xml")
    headers = {"x-amzn-RequestId": request_id, "x-amzn-ErrorType": code}
    if protocol == "smithy-rpc-v2-cbor":
        headers["smithy-protocol"] = "rpc-v2-cbor"
        body_bytes = cbor2.dumps({"__type": code, "message": message})
        return Response(body_bytes, status, headers, media_type="application/cbor")
    media = "application/x-amz-json-1.0" if protocol == "json" else "application/json"
    return Response(json.dumps({"__type": code, "message": message}), status, headers, media)
