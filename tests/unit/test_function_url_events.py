"""Request → payload format 2.0 event, and which URL a request names."""

from __future__ import annotations

import base64
import calendar
from typing import Any

import orjson
import pytest

from lamina.function_urls.addresses import locate
from lamina.function_urls.events import (
    UrlRequest,
    build_event,
    is_text,
    join_headers,
    request_time,
)

URL_ID = "a" * 32


def scope(path: bytes, host: bytes) -> dict[str, Any]:
    return {"path": path.decode(), "raw_path": path, "headers": [(b"host", host)]}


def test_host_based_address_keeps_the_path() -> None:
    address = locate(scope(b"/a%20b/c", f"{URL_ID}.lambda-url.us-east-1.localhost:9000".encode()))
    assert address is not None
    assert (address.url_id, address.raw_path, address.by_host) == (URL_ID, "/a%20b/c", True)
    assert address.domain_name("us-east-1") == f"{URL_ID}.lambda-url.us-east-1.localhost"


@pytest.mark.parametrize(
    ("path", "raw_path"),
    [
        (f"/lambda-url/{URL_ID}/x/y".encode(), "/x/y"),
        (f"/lambda-url/{URL_ID}/".encode(), "/"),
        (f"/lambda-url/{URL_ID}".encode(), "/"),
    ],
)
def test_path_based_address_strips_the_prefix(path: bytes, raw_path: str) -> None:
    address = locate(scope(path, b"127.0.0.1:9000"))
    assert address is not None
    assert (address.url_id, address.raw_path, address.by_host) == (URL_ID, raw_path, False)
    assert address.domain_name("eu-west-1") == f"{URL_ID}.lambda-url.eu-west-1.localhost"


def test_no_url_id_is_no_address() -> None:
    assert locate(scope(b"/lambda-url/", b"127.0.0.1")) is None


def test_repeated_headers_join_with_commas_and_undecodable_ones_are_dropped() -> None:
    headers = join_headers(
        [(b"accept", b"a"), (b"x-bin", b"\xff\xfe"), (b"accept", b"b"), (b"x-utf8", "é".encode())]
    )
    assert headers == {"accept": "a,b", "x-utf8": "é"}


@pytest.mark.parametrize(
    ("content_type", "text"),
    [
        ("text/plain; charset=utf-8", True),
        ("application/json", True),
        ("application/vnd.api+json", True),
        ("application/xml", True),
        ("application/javascript", True),
        ("application/x-www-form-urlencoded", False),
        ("application/octet-stream", False),
        ("image/png", False),
        (None, False),
    ],
)
def test_which_bodies_are_text(content_type: str | None, text: bool) -> None:
    assert is_text(content_type) is text


def test_request_time_is_apache_style_utc() -> None:
    epoch_ms = calendar.timegm((2020, 3, 12, 19, 3, 58)) * 1000 + 390
    assert request_time(epoch_ms) == "12/Mar/2020:19:03:58 +0000"


def event_for(**overrides: Any) -> dict[str, Any]:
    address = locate(scope(f"/lambda-url/{URL_ID}/my/p%C3%A4th".encode(), b"127.0.0.1:9000"))
    assert address is not None
    request = UrlRequest(
        method=overrides.pop("method", "POST"),
        address=address,
        query=overrides.pop("query", ""),
        headers=overrides.pop("headers", {"host": "127.0.0.1:9000"}),
        body=overrides.pop("body", b""),
        source_ip="127.0.0.1",
        protocol="HTTP/1.1",
        scheme="http",
        port=9000,
    )
    arguments: dict[str, Any] = {
        "request_id": "rid",
        "trace_id": "Root=1-x",
        "epoch_ms": 1583348638390,
        "region": "us-east-1",
        "account_id": "anonymous",
        "authorizer": None,
        "strip_authorization": False,
    }
    arguments.update(overrides)
    event: dict[str, Any] = orjson.loads(build_event(request, **arguments))
    return event


def test_minimal_event_has_aws_shape() -> None:
    event = event_for()
    assert event == {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/my/p%C3%A4th",
        "rawQueryString": "",
        "headers": {
            "host": "127.0.0.1:9000",
            "x-forwarded-for": "127.0.0.1",
            "x-forwarded-proto": "http",
            "x-forwarded-port": "9000",
            "x-amzn-trace-id": "Root=1-x",
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": URL_ID,
            "domainName": f"{URL_ID}.lambda-url.us-east-1.localhost",
            "domainPrefix": URL_ID,
            "http": {
                "method": "POST",
                "path": "/my/päth",
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "",
            },
            "requestId": "rid",
            "routeKey": "$default",
            "stage": "$default",
            "time": "04/Mar/2020:19:03:58 +0000",
            "timeEpoch": 1583348638390,
        },
        "isBase64Encoded": False,
    }


def test_query_cookies_and_text_body() -> None:
    event = event_for(
        query="a=1&a=2&b=&c=x%20y",
        headers={"cookie": "s=1; t=2", "content-type": "text/plain", "user-agent": "ua"},
        body="héllo".encode(),
    )
    assert event["rawQueryString"] == "a=1&a=2&b=&c=x%20y"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "", "c": "x y"}
    assert event["cookies"] == ["s=1", "t=2"]
    assert "cookie" not in event["headers"]
    assert event["requestContext"]["http"]["userAgent"] == "ua"
    assert (event["body"], event["isBase64Encoded"]) == ("héllo", False)


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"content-type": "image/png"}, b"\x89PNG\x00"),
        ({}, b"no content type"),
        ({"content-type": "application/x-www-form-urlencoded"}, b"a=1&b=2"),
        # Declared as text but not UTF-8: it can only travel encoded.
        ({"content-type": "text/plain"}, b"\xff\xfe"),
    ],
)
def test_binary_and_undeclared_bodies_are_base64(headers: dict[str, str], body: bytes) -> None:
    event = event_for(headers=headers, body=body)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == body


def test_iam_event_names_the_caller_and_drops_the_signature() -> None:
    authorizer = {"iam": {"accessKey": "AKIA", "accountId": "000000000000"}}
    event = event_for(
        headers={"authorization": "AWS4-HMAC-SHA256 ...", "x-amz-date": "20200101T000000Z"},
        account_id="000000000000",
        authorizer=authorizer,
        strip_authorization=True,
    )
    assert event["requestContext"]["accountId"] == "000000000000"
    assert event["requestContext"]["authorizer"] == authorizer
    assert "authorization" not in event["headers"]
    assert event["headers"]["x-amz-date"] == "20200101T000000Z"


def test_forwarded_for_is_appended_to() -> None:
    event = event_for(headers={"x-forwarded-for": "10.0.0.1"})
    assert event["headers"]["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
