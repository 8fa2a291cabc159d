"""What the function returned, as the HTTP response the client gets (payload format 2.0).

An object with `statusCode` is a response description: `statusCode`, `headers`, `body` (a
string, base64 when `isBase64Encoded`), `cookies` (each becomes a `set-cookie` header). Any
other JSON value is sent as it is, with status 200. Either way `content-type` defaults to
`application/json`. A description Lamina cannot follow raises `MalformedResponse` (a 502).

Headers that cannot be represented in HTTP (a name that is not a token, a value with control
characters, a value that is neither a string, a number nor a boolean) are dropped, as are the
framing headers Lamina sets itself (`content-length`, `transfer-encoding`, `connection`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

Headers = list[tuple[bytes, bytes]]

CONTENT_TYPE = b"content-type"
JSON_TYPE = b"application/json"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})
_REPEATABLE = frozenset({b"vary", b"set-cookie"})


class MalformedResponse(Exception):
    """The function's output is not a response Lamina can send; the message says why."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Headers
    body: bytes
    # Names of headers the function returned that could not be sent (for the server log).
    dropped: list[str] = field(default_factory=list)


def platform_response(status: int, message: str) -> HttpResponse:
    """A response Lamina gives on its own account (403, 413, 429, 502), in AWS's shape."""
    return HttpResponse(status, [(CONTENT_TYPE, JSON_TYPE)], orjson.dumps({"Message": message}))


FORBIDDEN = platform_response(403, "Forbidden")
TOO_LARGE = platform_response(413, "Request Entity Too Large")
THROTTLED = platform_response(429, "Too Many Requests")
BAD_GATEWAY = platform_response(502, "Internal Server Error")


def merge(function_headers: Headers, platform_headers: Headers) -> Headers:
    """The function's headers plus Lamina's, Lamina's replacing any of the same name
    (`vary` and `set-cookie` may repeat, so those are kept from both)."""
    if not platform_headers:
        return list(function_headers)
    replaced = {name for name, _ in platform_headers} - _REPEATABLE
    kept = [(name, value) for name, value in function_headers if name not in replaced]
    return kept + platform_headers


def header_value(value: Any) -> str | None:
    """A header value as text, or None when it has no HTTP representation."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str | int | float):
        text = str(value)
    else:
        return None
    return None if _CONTROL.search(text) else text


def header_pairs(given: Any, dropped: list[str]) -> Headers:
    if given is None:
        return []
    if not isinstance(given, Mapping):
        raise MalformedResponse(f"'headers' must be an object, not {type(given).__name__}")
    headers: Headers = []
    for name, value in given.items():
        text = header_value(value)
        if text is None or not _TOKEN.fullmatch(name) or name.lower() in _FRAMING:
            dropped.append(name)
            continue
        headers.append((name.lower().encode("ascii"), text.encode("utf-8")))
    return headers


def cookie_headers(given: Any, dropped: list[str]) -> Headers:
    if given is None:
        return []
    if not isinstance(given, list):
        raise MalformedResponse(f"'cookies' must be an array, not {type(given).__name__}")
    cookies: Headers = []
    for cookie in given:
        text = cookie if isinstance(cookie, str) else None
        if text is None or _CONTROL.search(text):
            dropped.append("set-cookie")
            continue
        cookies.append((b"set-cookie", text.encode("utf-8")))
    return cookies


def _body(description: Mapping[str, Any]) -> bytes:
    body = description.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise MalformedResponse(f"'body' must be a string, not {type(body).__name__}")
    if not description.get("isBase64Encoded"):
        return body.encode("utf-8")
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error:
        raise MalformedResponse("'isBase64Encoded' is true but 'body' is not base64") from None


def _status(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        raise MalformedResponse(f"'statusCode' must be an integer from 100 to 599, not {value!r}")
    return value


def map_response(payload: bytes) -> HttpResponse:
    """The HTTP response for a buffered function result (the invocation's payload bytes)."""
    if not payload.strip():
        return HttpResponse(200, [(CONTENT_TYPE, JSON_TYPE)], b"")
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise MalformedResponse("the function's result is not valid JSON") from None
    if not isinstance(value, dict) or "statusCode" not in value:
        # A bare value: already JSON, so it is sent as the function produced it.
        return HttpResponse(200, [(CONTENT_TYPE, JSON_TYPE)], payload)
    return describe(value)


def describe(description: Mapping[str, Any]) -> HttpResponse:
    """The response an object with `statusCode` describes."""
    status = _status(description.get("statusCode"))
    dropped: list[str] = []
    headers = header_pairs(description.get("headers"), dropped)
    if not any(name == CONTENT_TYPE for name, _ in headers):
        headers.append((CONTENT_TYPE, JSON_TYPE))
    headers += cookie_headers(description.get("cookies"), dropped)
    return HttpResponse(status, headers, _body(description), dropped)
