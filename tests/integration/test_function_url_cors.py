"""CORS on function URLs: preflights answered by Lamina, configured headers on responses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.support.archives import make_zip
from tests.support.function_urls import HANDLERS, allow_public, fetch, send_json
from tests.support.server import LaminaServer

ORIGIN = "https://app.example"
CORS = {
    "AllowOrigins": [ORIGIN, "https://*.example.org"],
    "AllowMethods": ["GET", "POST"],
    "AllowHeaders": ["x-custom", "content-type"],
    "ExposeHeaders": ["x-total"],
    "MaxAge": 600,
    "AllowCredentials": True,
}
PREFLIGHT = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}


def cors_headers(headers: Any) -> dict[str, str]:
    return {
        name.lower(): value
        for name, value in headers.items()
        if name.lower().startswith("access-control-")
    }


def url_for(
    client: Any,
    create_function: Callable[..., Any],
    handler: str,
    auth_type: str = "NONE",
    **url: Any,
) -> tuple[str, str]:
    name = create_function(
        Handler=f"app.{handler}", Code={"ZipFile": make_zip({"app.py": HANDLERS})}
    )["FunctionName"]
    allow_public(client, name)
    config = client.create_function_url_config(FunctionName=name, AuthType=auth_type, **url)
    return name, str(config["FunctionUrl"])


def test_preflight_is_answered_without_invoking_the_function(
    server: LaminaServer, lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    # The function always fails: a 200 shows that Lamina, not the function, answered.
    _, function_url = url_for(lambda_client, create_function, "fails", Cors=CORS)
    reply = fetch(server, function_url, "/any", method="OPTIONS", headers=PREFLIGHT)
    assert (reply.status, reply.body) == (200, b"")
    assert cors_headers(reply.headers) == {
        "access-control-allow-origin": ORIGIN,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, POST",
        "access-control-allow-headers": "x-custom, content-type",
        "access-control-max-age": "600",
    }
    assert reply.headers["vary"] == "Origin"
    assert reply.headers["x-amzn-RequestId"]
    wildcard = {**PREFLIGHT, "Origin": "https://a.b.example.org"}
    reply = fetch(server, function_url, method="OPTIONS", headers=wildcard)
    assert reply.headers["access-control-allow-origin"] == "https://a.b.example.org"
    # A foreign origin gets an answer without any permission in it.
    foreign = {**PREFLIGHT, "Origin": "https://evil.example"}
    reply = fetch(server, function_url, method="OPTIONS", headers=foreign)
    assert reply.status == 200
    assert cors_headers(reply.headers) == {}


def test_preflights_need_no_signature_on_iam_urls(
    server: LaminaServer, lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    # Browsers never sign preflight requests.
    _, function_url = url_for(
        lambda_client, create_function, "echo", auth_type="AWS_IAM", Cors={"AllowOrigins": ["*"]}
    )
    reply = fetch(server, function_url, method="OPTIONS", headers=PREFLIGHT)
    assert reply.status == 200
    assert reply.headers["access-control-allow-origin"] == "*"
    assert fetch(server, function_url, headers={"Origin": ORIGIN}).status == 403


def test_configured_headers_are_added_and_win_over_the_functions(
    server: LaminaServer, lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    _, function_url = url_for(lambda_client, create_function, "respond", Cors=CORS)
    returned = {
        "statusCode": 200,
        "headers": {
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Expose-Headers": "x-other",
            "X-Total": "3",
        },
        "body": "ok",
    }
    reply = send_json(server, function_url, returned, headers={"Origin": ORIGIN})
    assert (reply.status, reply.body) == (200, b"ok")
    assert cors_headers(reply.headers) == {
        "access-control-allow-origin": ORIGIN,
        "access-control-allow-credentials": "true",
        "access-control-expose-headers": "x-total",
    }
    assert reply.headers["x-total"] == "3"
    # Without an Origin header the request is not cross-origin: the function's headers stay.
    reply = send_json(server, function_url, returned)
    assert reply.headers["access-control-allow-origin"] == "*"
    # Lamina's own error responses carry them too, so a browser can read them.
    reply = send_json(server, function_url, {"statusCode": "bad"}, headers={"Origin": ORIGIN})
    assert reply.status == 502
    assert reply.headers["access-control-allow-origin"] == ORIGIN


def test_without_cors_options_requests_reach_the_function(
    server: LaminaServer, lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name, function_url = url_for(lambda_client, create_function, "echo")
    reply = fetch(server, function_url, method="OPTIONS", headers=PREFLIGHT)
    assert reply.status == 200
    assert reply.json()["event"]["requestContext"]["http"]["method"] == "OPTIONS"
    assert cors_headers(reply.headers) == {}
    # Adding a Cors config later takes effect at once.
    lambda_client.update_function_url_config(FunctionName=name, Cors={"AllowOrigins": ["*"]})
    reply = fetch(server, function_url, method="OPTIONS", headers=PREFLIGHT)
    assert (reply.status, reply.body) == (200, b"")
    assert reply.headers["access-control-allow-origin"] == "*"
