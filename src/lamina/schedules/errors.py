"""EventBridge's own error codes, in Lamina's error tree (the shared ones come from there too)."""

from __future__ import annotations

from lamina.errors import ClientError


class InvalidEventPattern(ClientError):
    code = "InvalidEventPatternException"


class LimitExceeded(ClientError):
    code = "LimitExceededException"
