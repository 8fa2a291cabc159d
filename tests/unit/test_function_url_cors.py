"""A URL's Cors config as preflight answers and response headers."""

from __future__ import annotations

from lamina.control.urls import Cors
from lamina.function_urls.cors import CorsRules, is_preflight


def test_preflight_needs_origin_and_requested_method() -> None:
    asked = {"origin": "https://a.example", "access-control-request-method": "PUT"}
    assert is_preflight("OPTIONS", asked)
    assert not is_preflight("GET", asked)
    assert not is_preflight("OPTIONS", {"origin": "https://a.example"})


def test_any_origin_without_credentials_is_a_star() -> None:
    rules = CorsRules(
        Cors(
            allow_origins=("*",),
            allow_methods=("GET", "POST"),
            allow_headers=("x-custom", "content-type"),
            expose_headers=("x-total",),
            max_age=300,
        )
    )
    assert rules.preflight("https://a.example") == [
        (b"access-control-allow-origin", b"*"),
        (b"access-control-allow-methods", b"GET, POST"),
        (b"access-control-allow-headers", b"x-custom, content-type"),
        (b"access-control-max-age", b"300"),
    ]
    assert rules.response("https://a.example") == [
        (b"access-control-allow-origin", b"*"),
        (b"access-control-expose-headers", b"x-total"),
    ]
    # No Origin header: not a cross-origin request, nothing to add.
    assert rules.response(None) == []


def test_listed_origins_are_echoed_with_vary_and_others_get_nothing() -> None:
    rules = CorsRules(
        Cors(allow_origins=("https://app.example", "https://*.example.org"), allow_credentials=True)
    )
    for origin in ("https://app.example", "https://a.b.example.org", "HTTPS://APP.EXAMPLE"):
        assert rules.response(origin) == [
            (b"access-control-allow-origin", origin.encode()),
            (b"vary", b"Origin"),
            (b"access-control-allow-credentials", b"true"),
        ]
    for origin in ("https://evil.example", "https://app.example.evil", "http://app.example"):
        assert rules.response(origin) == []
        assert rules.preflight(origin) == []


def test_credentials_turn_a_star_into_the_callers_origin() -> None:
    rules = CorsRules(Cors(allow_origins=("*",), allow_credentials=True))
    assert rules.response("https://a.example")[:2] == [
        (b"access-control-allow-origin", b"https://a.example"),
        (b"vary", b"Origin"),
    ]
