"""Runtime API details that are easiest to see without a runtime."""

from __future__ import annotations

from lamina.sandbox.runtime_api import _body_error_type


def test_error_type_comes_from_the_body_when_the_header_is_missing() -> None:
    assert _body_error_type(b'{"errorType": "ValueError", "errorMessage": "x"}') == "ValueError"


def test_unusable_bodies_give_unknown() -> None:
    assert _body_error_type(b"not json") == "Unknown"
    assert _body_error_type(b'["a list"]') == "Unknown"
    assert _body_error_type(b'{"errorType": ""}') == "Unknown"
