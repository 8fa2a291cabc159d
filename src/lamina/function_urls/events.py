"""An HTTP request as the function sees it: AWS's payload format 2.0 event.

As AWS builds it: header names lower-cased and repeated headers joined with commas; the
`Cookie` header moved into `cookies`; repeated query parameters joined with commas; the body
base64-encoded unless its content type is text (`text/*`, JSON, JavaScript, XML and their
`+json` / `+xml` variants); `x-forwarded-*` and `x-amzn-trace-id` headers added; `cookies`,
`queryStringParameters` and `body` left out when the request has none. `requestContext`
carries `accountId` (`anonymous` unless the request was IAM-signed), the URL id as `apiId`,
`$default` route and stage, the request id and the time.

`rawPath` is the path as the client sent it (still percent-encoded); `requestContext.http.path`
is the same path decoded.
"""

from __future__ import annotations

import base64
import functools
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson

from lamina.constants import HEADER_TRACE_ID
from lamina.function_urls.addresses import UrlAddress

_TEXT_TYPE = re.compile(
    r"text/.*|application/(json|javascript|xml|[^;/]+\+(json|xml))", re.IGNORECASE
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class UrlRequest:
    """What arrived: `headers` has lower-case names and values joined as AWS joins them."""

    method: str
    address: UrlAddress
    query: str
    headers: dict[str, str]
    body: bytes
    source_ip: str
    protocol: str
    scheme: str
    port: int


def join_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Request headers by lower-case name; values that are not UTF-8 cannot travel in the
    JSON event and are dropped, as AWS drops headers it cannot represent."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in raw:
        try:
            name, value = raw_name.decode("ascii").lower(), raw_value.decode("utf-8")
        except UnicodeDecodeError:
            continue
        previous = headers.get(name)
        headers[name] = value if previous is None else f"{previous},{value}"
    return headers


def request_time(epoch_ms: int) -> str:
    """`requestContext.time`: `12/Mar/2020:19:03:58 +0000` (English month names, UTC)."""
    return _second_text(epoch_ms // 1000)


@functools.lru_cache(maxsize=4)
def _second_text(epoch_seconds: int) -> str:
    # Formatting costs more than the rest of the event; it changes only once a second.
    moment = time.gmtime(epoch_seconds)
    return (
        f"{moment.tm_mday:02d}/{_MONTHS[moment.tm_mon - 1]}/{moment.tm_year}:"
        f"{moment.tm_hour:02d}:{moment.tm_min:02d}:{moment.tm_sec:02d} +0000"
    )


def is_text(content_type: str | None) -> bool:
    if not content_type:
        return False
    return _TEXT_TYPE.fullmatch(content_type.partition(";")[0].strip()) is not None


def _body_members(body: bytes, content_type: str | None) -> dict[str, Any]:
    if not body:
        return {"isBase64Encoded": False}
    if is_text(content_type):
        try:
            return {"body": body.decode("utf-8"), "isBase64Encoded": False}
        except UnicodeDecodeError:
            pass  # Declared as text but is not: it can only travel encoded.
    return {"body": base64.b64encode(body).decode("ascii"), "isBase64Encoded": True}


def _query_parameters(query: str) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        previous = parameters.get(name)
        parameters[name] = value if previous is None else f"{previous},{value}"
    return parameters


def build_event(
    request: UrlRequest,
    *,
    request_id: str,
    trace_id: str,
    epoch_ms: int,
    region: str,
    account_id: str,
    authorizer: dict[str, Any] | None,
    strip_authorization: bool,
) -> bytes:
    """The event's JSON bytes; `account_id` is `anonymous` for requests nobody signed."""
    headers = dict(request.headers)
    cookie = headers.pop("cookie", None)
    if strip_authorization:
        # Consumed by Lamina's own SigV4 check, as AWS does with IAM-authorised requests.
        headers.pop("authorization", None)
    forwarded = headers.get("x-forwarded-for")
    headers["x-forwarded-for"] = (
        f"{forwarded}, {request.source_ip}" if forwarded else request.source_ip
    )
    headers["x-forwarded-proto"] = request.scheme
    headers["x-forwarded-port"] = str(request.port)
    headers[HEADER_TRACE_ID.lower()] = trace_id
    address = request.address
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": address.raw_path,
        "rawQueryString": request.query,
    }
    if cookie:
        event["cookies"] = [part.strip() for part in cookie.split(";") if part.strip()]
    event["headers"] = headers
    if request.query:
        event["queryStringParameters"] = _query_parameters(request.query)
    context: dict[str, Any] = {
        "accountId": account_id,
        "apiId": address.url_id,
        "domainName": address.domain_name(region),
        "domainPrefix": address.url_id,
        "http": {
            "method": request.method,
            "path": unquote(address.raw_path),
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": request_time(epoch_ms),
        "timeEpoch": epoch_ms,
    }
    if authorizer is not None:
        context["authorizer"] = authorizer
    event["requestContext"] = context
    event.update(_body_members(request.body, headers.get("content-type")))
    return orjson.dumps(event)
