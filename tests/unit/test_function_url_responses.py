"""Function output → HTTP response, and the headers Lamina adds on top."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from lamina.function_urls.responses import MalformedResponse, map_response, merge

JSON = (b"content-type", b"application/json")


def mapped(value: Any) -> tuple[int, list[tuple[bytes, bytes]], bytes, list[str]]:
    response = map_response(json.dumps(value).encode())
    return response.status, response.headers, response.body, response.dropped


@pytest.mark.parametrize("value", ["Hello, world!", {"message": "hi"}, [1, 2], 3, None, True])
def test_a_bare_value_is_sent_as_json_as_it_is(value: Any) -> None:
    payload = json.dumps(value).encode()
    response = map_response(payload)
    assert (response.status, response.headers, response.body) == (200, [JSON], payload)


def test_an_empty_result_is_an_empty_200() -> None:
    response = map_response(b"")
    assert (response.status, response.headers, response.body) == (200, [JSON], b"")


def test_a_description_sets_status_headers_body_and_cookies() -> None:
    status, headers, body, dropped = mapped(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "text/html", "X-Count": 3, "X-Flag": True},
            "body": "<p>hi</p>",
            "cookies": ["a=1; Max-Age=60", "b=2"],
        }
    )
    assert status == 201
    assert headers == [
        (b"content-type", b"text/html"),
        (b"x-count", b"3"),
        (b"x-flag", b"true"),
        (b"set-cookie", b"a=1; Max-Age=60"),
        (b"set-cookie", b"b=2"),
    ]
    assert (body, dropped) == (b"<p>hi</p>", [])


def test_content_type_defaults_to_json() -> None:
    _, headers, body, _ = mapped({"statusCode": 204})
    assert (headers, body) == ([JSON], b"")


def test_base64_bodies_are_decoded() -> None:
    raw = bytes(range(256))
    _, _, body, _ = mapped(
        {"statusCode": 200, "body": base64.b64encode(raw).decode(), "isBase64Encoded": True}
    )
    assert body == raw


def test_headers_http_cannot_carry_are_dropped() -> None:
    _, headers, _, dropped = mapped(
        {
            "statusCode": 200,
            "headers": {
                "Bad Name": "x",
                "X-Split": "a\r\nInjected: yes",
                "X-List": ["a", "b"],
                "X-Null": None,
                "Content-Length": "999",
                "Transfer-Encoding": "chunked",
                "X-Ok": "fine\tvalue",
            },
            "cookies": ["ok=1", 5, "bad=\n"],
        }
    )
    assert headers == [(b"x-ok", b"fine\tvalue"), JSON, (b"set-cookie", b"ok=1")]
    assert dropped == [
        "Bad Name",
        "X-Split",
        "X-List",
        "X-Null",
        "Content-Length",
        "Transfer-Encoding",
        "set-cookie",
        "set-cookie",
    ]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b'{"statusCode": "200"}', "'statusCode' must be an integer from 100 to 599"),
        (b'{"statusCode": 700}', "'statusCode' must be an integer from 100 to 599"),
        (b'{"statusCode": true}', "'statusCode' must be an integer from 100 to 599"),
        (b'{"statusCode": 200, "body": {"a": 1}}', "'body' must be a string, not dict"),
        (b'{"statusCode": 200, "headers": ["a"]}', "'headers' must be an object, not list"),
        (b'{"statusCode": 200, "cookies": "a=1"}', "'cookies' must be an array, not str"),
        (
            b'{"statusCode": 200, "body": "***", "isBase64Encoded": true}',
            "'isBase64Encoded' is true but 'body' is not base64",
        ),
    ],
)
def test_descriptions_lamina_cannot_follow_say_why(payload: bytes, reason: str) -> None:
    with pytest.raises(MalformedResponse, match=reason.replace("(", r"\(")):
        map_response(payload)


def test_platform_headers_replace_the_functions_but_vary_and_cookies_add_up() -> None:
    function = [
        (b"x-amzn-requestid", b"fake"),
        (b"access-control-allow-origin", b"*"),
        (b"vary", b"Accept"),
        (b"set-cookie", b"a=1"),
        (b"x-own", b"1"),
    ]
    platform = [
        (b"access-control-allow-origin", b"https://app.example"),
        (b"vary", b"Origin"),
        (b"x-amzn-requestid", b"real"),
    ]
    assert merge(function, platform) == [
        (b"vary", b"Accept"),
        (b"set-cookie", b"a=1"),
        (b"x-own", b"1"),
        *platform,
    ]
    assert merge(function, []) == function
    assert merge(function, []) is not function
