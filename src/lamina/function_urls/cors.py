"""A URL's CORS settings as response headers, and the preflight answer Lamina gives itself.

As on AWS: with a `Cors` config, preflight requests (OPTIONS with `Origin` and
`Access-Control-Request-Method`) are answered without invoking the function, and every other
response from an allowed origin carries the configured `Access-Control-*` headers, which win
over same-named headers the function returned (see `responses.merge`). Without a `Cors`
config nothing is added and OPTIONS requests reach the function like any other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from lamina.control.urls import Cors

Headers = list[tuple[bytes, bytes]]

_ALLOW_ORIGIN = b"access-control-allow-origin"
_ALLOW_METHODS = b"access-control-allow-methods"
_ALLOW_HEADERS = b"access-control-allow-headers"
_ALLOW_CREDENTIALS = b"access-control-allow-credentials"
_EXPOSE_HEADERS = b"access-control-expose-headers"
_MAX_AGE = b"access-control-max-age"
_VARY = (b"vary", b"Origin")


def is_preflight(method: str, headers: dict[str, str]) -> bool:
    return (
        method == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers
    )


def _joined(values: Iterable[str] | None) -> bytes | None:
    return ", ".join(values).encode() if values else None


def _origin_pattern(origin: str) -> re.Pattern[str]:
    """`https://*.example.com` allows any subdomain; everything else must match exactly."""
    return re.compile(".*".join(re.escape(part) for part in origin.split("*")), re.IGNORECASE)


class CorsRules:
    """The headers one URL's Cors config adds; built once per config, used per request."""

    def __init__(self, cors: Cors) -> None:
        origins = cors.allow_origins or ()
        self._any_origin = "*" in origins
        self._origins = [_origin_pattern(origin) for origin in origins if origin != "*"]
        self._credentials = bool(cors.allow_credentials)
        self._methods = _joined(cors.allow_methods)
        self._allow_headers = _joined(cors.allow_headers)
        self._expose = _joined(cors.expose_headers)
        self._max_age = str(cors.max_age).encode() if cors.max_age is not None else None

    def _allowed_origin(self, origin: str | None) -> bytes | None:
        """The `Access-Control-Allow-Origin` value for `origin`, or None if it is not allowed."""
        if not origin:
            return None
        if self._any_origin and not self._credentials:
            return b"*"
        # Browsers refuse `*` on credentialed requests, so an allowed origin is echoed back.
        if self._any_origin or any(pattern.fullmatch(origin) for pattern in self._origins):
            return origin.encode("latin-1", "replace")
        return None

    def _common(self, allowed: bytes) -> Headers:
        headers: Headers = [(_ALLOW_ORIGIN, allowed)]
        if allowed != b"*":
            headers.append(_VARY)
        if self._credentials:
            headers.append((_ALLOW_CREDENTIALS, b"true"))
        return headers

    def preflight(self, origin: str | None) -> Headers:
        """The headers of Lamina's answer to a preflight request (none for a foreign origin)."""
        allowed = self._allowed_origin(origin)
        if allowed is None:
            return []
        headers = self._common(allowed)
        for name, value in (
            (_ALLOW_METHODS, self._methods),
            (_ALLOW_HEADERS, self._allow_headers),
            (_MAX_AGE, self._max_age),
        ):
            if value is not None:
                headers.append((name, value))
        return headers

    def response(self, origin: str | None) -> Headers:
        """The headers added to an ordinary response (none for a foreign origin)."""
        allowed = self._allowed_origin(origin)
        if allowed is None:
            return []
        headers = self._common(allowed)
        if self._expose is not None:
            headers.append((_EXPOSE_HEADERS, self._expose))
        return headers
