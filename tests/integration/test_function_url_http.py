"""Function URLs answering HTTP: addresses, the 2.0 event, response mapping, platform errors.

Requests go to the real server with http.client, connecting to 127.0.0.1: by path
(`/lambda-url/<id>/`), or with the host form's Host header (`<id>.lambda-url.<region>.
localhost`), since not every resolver maps `*.localhost` to loopback (curl and browsers do;
glibc without nss-myhostname does not). Which form Lamina hands out is tested in
test_function_url_addresses.py.
"""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import subprocess
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.archives import make_zip
from tests.support.function_urls import (
    HANDLERS,
    Reply,
    allow_public,
    fetch,
    host_header,
    send_json,
    url_id,
)
from tests.support.lambda_api import ROLE
from tests.support.ports import free_port
from tests.support.server import LaminaServer, server_log


@pytest.fixture
def public_url(lambda_client: Any, create_function: Callable[..., Any]) -> Callable[..., str]:
    """A function with a public (NONE) URL; returns the FunctionUrl."""

    def make(handler: str = "echo", files: dict[str, str] | None = None, **url: Any) -> str:
        name = create_function(
            Handler=f"app.{handler}", Code={"ZipFile": make_zip(files or {"app.py": HANDLERS})}
        )["FunctionName"]
        allow_public(lambda_client, name)
        config = lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE", **url)
        return str(config["FunctionUrl"])

    return make


# --------------------------------------------------------------------------- addresses


def test_the_returned_function_url_is_served_by_host_and_by_path(
    server: LaminaServer, public_url: Callable[..., str]
) -> None:
    function_url = public_url()
    assert urlsplit(function_url).port == server.port
    domain_name = host_header(server, function_url).rpartition(":")[0]
    by_host = fetch(server, function_url, "/a/b?x=1", by_host=True)
    by_path = fetch(server, function_url, "/a/b?x=1")
    for reply in (by_host, by_path):
        assert reply.status == 200
        event = reply.json()["event"]
        assert (event["rawPath"], event["rawQueryString"]) == ("/a/b", "x=1")
        # AWS's name for the URL (its host form, without the port), whichever form was used.
        assert event["requestContext"]["domainName"] == domain_name
    assert by_host.json()["event"]["headers"]["host"] == host_header(server, function_url)
    assert by_path.json()["event"]["headers"]["host"] == f"127.0.0.1:{server.port}"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl resolves *.localhost itself")
def test_curl_reaches_the_function_url_exactly_as_returned(
    public_url: Callable[..., str],
) -> None:
    function_url = public_url()
    output = subprocess.run(
        ["curl", "-sS", "--max-time", "60", f"{function_url}hello?from=curl"],
        capture_output=True,
        check=True,
    ).stdout
    event = json.loads(output)["event"]
    assert (event["rawPath"], event["queryStringParameters"]) == ("/hello", {"from": "curl"})


def test_a_server_published_elsewhere_hands_out_path_based_urls(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # `*.localhost` only reaches this machine: under another name the path form is given.
    port = free_port()
    env = {"LAMINA_PUBLIC_URL": f"http://lamina.example:{port}"}
    published = LaminaServer(tmp_path_factory.mktemp("published") / "data", env, port)
    try:
        client = published.start().client()
        try:
            client.create_function(
                FunctionName="published",
                Runtime="python3.12",
                Role=ROLE,
                Handler="app.echo",
                Code={"ZipFile": make_zip({"app.py": HANDLERS})},
            )
            allow_public(client, "published")
            created = client.create_function_url_config(FunctionName="published", AuthType="NONE")
            got = client.get_function_url_config(FunctionName="published")
        finally:
            client.close()
        function_url = created["FunctionUrl"]
        assert function_url == f"http://lamina.example:{port}/lambda-url/{url_id(function_url)}/"
        assert got["FunctionUrl"] == function_url
        reply = fetch(published, function_url, "/x")
        assert reply.status == 200
        assert reply.json()["event"]["rawPath"] == "/x"
    finally:
        published.stop()


def test_unknown_url_ids_are_forbidden(server: LaminaServer) -> None:
    reply = fetch(server, f"http://{'z' * 32}.lambda-url.us-east-1.localhost:{server.port}/")
    assert (reply.status, reply.json()) == (403, {"Message": "Forbidden"})
    assert reply.headers["x-amzn-RequestId"]
    assert reply.headers["content-type"] == "application/json"


def test_a_deleted_url_stops_answering(
    server: LaminaServer, lambda_client: Any, public_url: Callable[..., str]
) -> None:
    function_url = public_url()
    assert fetch(server, function_url).status == 200
    name = fetch(server, function_url).json()["arn"].rsplit(":", 1)[1]
    lambda_client.delete_function_url_config(FunctionName=name)
    assert fetch(server, function_url).status == 403


# --------------------------------------------------------------------------- the event


def test_event_has_aws_payload_format_2(
    server: LaminaServer, public_url: Callable[..., str]
) -> None:
    function_url = public_url()
    reply = fetch(
        server,
        function_url,
        "/my/p%C3%A4th?b=2&a=1&a=x%20y&empty=",
        method="POST",
        body=b'{"k": "v"}',
        headers={
            "Content-Type": "application/json",
            "User-Agent": "lamina-tests",
            "Cookie": "c1=v1; c2=v2",
            "X-Multi": "one",
        },
    )
    assert reply.status == 200
    result = reply.json()
    event = result["event"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "$default"
    assert event["rawPath"] == "/my/p%C3%A4th"
    assert event["rawQueryString"] == "b=2&a=1&a=x%20y&empty="
    assert event["queryStringParameters"] == {"b": "2", "a": "1,x y", "empty": ""}
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["x-multi"] == "one"
    assert event["headers"]["user-agent"] == "lamina-tests"
    assert event["headers"]["x-forwarded-proto"] == "http"
    assert event["headers"]["x-forwarded-port"] == str(server.port)
    assert event["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert (event["body"], event["isBase64Encoded"]) == ('{"k": "v"}', False)
    assert "pathParameters" not in event and "stageVariables" not in event
    context = event["requestContext"]
    identifier = url_id(function_url)
    assert context["accountId"] == "anonymous"
    assert context["apiId"] == context["domainPrefix"] == identifier
    assert context["domainName"] == f"{identifier}.lambda-url.us-east-1.localhost"
    assert context["http"] == {
        "method": "POST",
        "path": "/my/päth",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "lamina-tests",
    }
    assert (context["routeKey"], context["stage"]) == ("$default", "$default")
    assert "authorizer" not in context
    # The request id is the invocation's, and what the client gets back.
    assert context["requestId"] == result["requestId"] == reply.headers["x-amzn-RequestId"]
    assert isinstance(context["timeEpoch"], int)
    assert context["time"].endswith(" +0000") and len(context["time"]) == 26


def test_repeated_headers_are_joined_with_commas(
    server: LaminaServer, public_url: Callable[..., str]
) -> None:
    function_url = public_url()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.putrequest("GET", f"/lambda-url/{url_id(function_url)}/")
    connection.putheader("X-Repeated", "a")
    connection.putheader("X-Repeated", "b")
    connection.putheader("X-Latin", "caf\xe9")  # not UTF-8: cannot travel in the event
    connection.endheaders()
    event = Reply(connection.getresponse()).json()["event"]
    connection.close()
    assert event["headers"]["x-repeated"] == "a,b"
    assert "x-latin" not in event["headers"]


def test_binary_bodies_arrive_base64_encoded(
    server: LaminaServer, public_url: Callable[..., str]
) -> None:
    function_url = public_url()
    raw = bytes(range(256))
    for content_type in (
        "application/octet-stream",
        "image/png",
        "application/x-www-form-urlencoded",
    ):
        event = fetch(
            server, function_url, method="PUT", body=raw, headers={"Content-Type": content_type}
        ).json()["event"]
        assert event["isBase64Encoded"] is True
        assert base64.b64decode(event["body"]) == raw
    event = fetch(server, function_url).json()["event"]
    assert "body" not in event and event["isBase64Encoded"] is False


def test_trace_id_reaches_the_function_and_comes_back(
    server: LaminaServer, public_url: Callable[..., str]
) -> None:
    function_url = public_url()
    reply = fetch(server, function_url)
    trace = reply.headers["x-amzn-Trace-Id"]
    assert trace.startswith("Root=1-")
    assert reply.json()["trace"] == reply.json()["event"]["headers"]["x-amzn-trace-id"] == trace
    given = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
    reply = fetch(server, function_url, headers={"X-Amzn-Trace-Id": given})
    assert reply.headers["x-amzn-Trace-Id"] == reply.json()["trace"] == given


# --------------------------------------------------------------------------- qualifiers


def test_a_url_on_an_alias_runs_the_aliased_version(
    server: LaminaServer, lambda_client: Any, create_function: Callable[..., Any]
) -> None:
    name = create_function(
        Handler="app.echo",
        Code={"ZipFile": make_zip({"app.py": HANDLERS})},
        Environment={"Variables": {"VARIANT": "one"}},
    )["FunctionName"]
    version = lambda_client.publish_version(FunctionName=name)["Version"]
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    lambda_client.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"VARIANT": "two"}}
    )
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    live = lambda_client.create_function_url_config(
        FunctionName=name, Qualifier="live", AuthType="NONE"
    )
    latest = lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert live["FunctionArn"].endswith(f":{name}:live")
    assert live["FunctionUrl"] != latest["FunctionUrl"]
    # The alias has a policy of its own: the function's statements do not open it.
    allow_public(lambda_client, name)
    assert fetch(server, live["FunctionUrl"]).status == 403
    allow_public(lambda_client, name, "live")

    on_alias = fetch(server, live["FunctionUrl"]).json()
    assert (on_alias["variant"], on_alias["version"]) == ("one", version)
    assert on_alias["arn"].endswith(f":{name}:live")
    on_latest = fetch(server, latest["FunctionUrl"]).json()
    assert (on_latest["variant"], on_latest["version"]) == ("two", "$LATEST")
    assert on_latest["arn"].endswith(f":function:{name}")


# --------------------------------------------------------------------------- responses


def test_a_description_sets_status_headers_cookies_and_body(
    server: LaminaServer, public_url: Callable[..., str]
) -> None:
    function_url = public_url("respond")
    reply = send_json(
        server,
        function_url,
        {
            "statusCode": 201,
            "headers": {"Content-Type": "text/plain", "X-Custom": "yes", "X-Number": 7},
            "body": "created",
            "cookies": ["a=1; Max-Age=60", "b=2; HttpOnly"],
        },
    )
    assert (reply.status, reply.body) == (201, b"created")
    assert reply.headers["content-type"] == "text/plain"
    assert reply.headers["x-custom"] == "yes"
    assert reply.headers["x-number"] == "7"
    assert reply.headers.get_all("set-cookie") == ["a=1; Max-Age=60", "b=2; HttpOnly"]
    assert reply.headers["x-amzn-RequestId"]
    assert reply.headers["x-amzn-Trace-Id"]


def test_content_type_defaults_to_json_and_base64_bodies_are_decoded(
    server: LaminaServer, public_url: Callable[..., str]
) -> None:
    function_url = public_url("respond")
    raw = b"\x89PNG\r\n\x00\xff"
    reply = send_json(
        server,
        function_url,
        {"statusCode": 200, "body": base64.b64encode(raw).decode(), "isBase64Encoded": True},
    )
    assert (reply.status, reply.body) == (200, raw)
    assert reply.headers["content-type"] == "application/json"
    reply = send_json(server, function_url, {"statusCode": 404})
    assert (reply.status, reply.body, reply.headers["content-type"]) == (
        404,
        b"",
        "application/json",
    )


@pytest.mark.parametrize(
    "value", ["Hello, world!", {"message": "no statusCode"}, [1, "two"], 42, None]
)
def test_a_bare_json_value_is_a_200_with_that_json(
    server: LaminaServer, public_url: Callable[..., str], value: Any
) -> None:
    reply = send_json(server, public_url("respond"), value)
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == value


def test_headers_http_cannot_carry_are_dropped(
    server: LaminaServer, public_url: Callable[..., str]
) -> None:
    reply = send_json(
        server,
        public_url("respond"),
        {
            "statusCode": 200,
            "headers": {
                "X-Split": "a\r\nX-Injected: yes",
                "Bad Name": "x",
                "X-List": ["a"],
                "Content-Length": "999",
                "X-Kept": "kept",
            },
            "body": "ok",
        },
    )
    assert (reply.status, reply.body) == (200, b"ok")
    assert reply.headers["x-kept"] == "kept"
    for name in ("x-split", "x-injected", "bad name", "x-list"):
        assert name not in reply.headers
    assert reply.headers["content-length"] == "2"


# --------------------------------------------------------------------------- platform errors


def test_function_errors_are_502(server: LaminaServer, public_url: Callable[..., str]) -> None:
    reply = fetch(server, public_url("fails"))
    assert (reply.status, reply.json()) == (502, {"Message": "Internal Server Error"})
    request_id = reply.headers["x-amzn-RequestId"]
    assert f"request {request_id}: 502: the function failed: RuntimeError: boom" in server_log(
        server
    )


@pytest.mark.parametrize(
    ("returned", "reason"),
    [
        ({"statusCode": "200"}, "'statusCode' must be an integer from 100 to 599, not '200'"),
        ({"statusCode": 200, "body": {"a": 1}}, "'body' must be a string, not dict"),
        ({"statusCode": 200, "cookies": "a=1"}, "'cookies' must be an array, not str"),
        (
            {"statusCode": 200, "body": "%%%", "isBase64Encoded": True},
            "'isBase64Encoded' is true but 'body' is not base64",
        ),
    ],
)
def test_a_response_that_is_not_a_valid_mapping_is_502_and_logged(
    server: LaminaServer, public_url: Callable[..., str], returned: Any, reason: str
) -> None:
    reply = send_json(server, public_url("respond"), returned)
    assert (reply.status, reply.json()) == (502, {"Message": "Internal Server Error"})
    request_id = reply.headers["x-amzn-RequestId"]
    assert f"request {request_id}: 502: the function's response is invalid: {reason}" in server_log(
        server
    )


def test_a_body_over_6_mb_is_413(server: LaminaServer, public_url: Callable[..., str]) -> None:
    function_url = public_url()
    reply = fetch(server, function_url, method="POST", body=b"x" * (6 * 1024 * 1024 + 1))
    assert (reply.status, reply.json()) == (413, {"Message": "Request Entity Too Large"})
    assert f"request {reply.headers['x-amzn-RequestId']}: 413: the body is over" in server_log(
        server
    )
    # Under the limit as raw bytes, but too big once base64-encoded into the event.
    reply = fetch(
        server,
        function_url,
        method="POST",
        body=b"\x00" * (5 * 1024 * 1024),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert reply.status == 413
    assert f"request {reply.headers['x-amzn-RequestId']}: 413: the event the request makes (" in (
        server_log(server)
    )
    reply = fetch(
        server,
        function_url,
        method="POST",
        body=b"y" * (5 * 1024 * 1024),
        headers={"Content-Type": "text/plain"},
    )
    assert reply.status == 200
    assert len(reply.json()["event"]["body"]) == 5 * 1024 * 1024


def test_throttled_requests_are_429(
    server: LaminaServer, lambda_client: Any, public_url: Callable[..., str]
) -> None:
    function_url = public_url()
    name = fetch(server, function_url).json()["arn"].rsplit(":", 1)[1]
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    reply = fetch(server, function_url)
    assert (reply.status, reply.json()) == (429, {"Message": "Too Many Requests"})
    lambda_client.delete_function_concurrency(FunctionName=name)
    assert fetch(server, function_url).status == 200
