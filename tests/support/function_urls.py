"""Function URLs over real HTTP: the handlers the URL tests deploy, and calling a URL.

Lamina hands out the host form (`<id>.lambda-url.<region>.localhost`) where the system
resolver maps `*.localhost` to loopback, else the path form (`/lambda-url/<id>/`); it serves
both. `fetch` reaches either form by connecting to 127.0.0.1, with the host form's Host header
when asked to go by host.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
from typing import Any
from urllib.parse import urlsplit

from tests.support.server import LaminaServer

HANDLERS = """
import json, os

def echo(event, context):
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({
            "event": event,
            "requestId": context.aws_request_id,
            "arn": context.invoked_function_arn,
            "version": context.function_version,
            "trace": os.environ.get("_X_AMZN_TRACE_ID"),
            "variant": os.environ.get("VARIANT"),
        }),
    }

def respond(event, context):
    # Returns whatever JSON the request body holds, so one warm function covers every case.
    return json.loads(event["body"])

def fails(event, context):
    raise RuntimeError("boom")
"""


class Reply:
    """One HTTP response, read whole."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()

    def json(self) -> Any:
        return json.loads(self.body)


def url_id(function_url: str) -> str:
    """The URL id of a host-based or a path-based function URL."""
    parts = urlsplit(function_url)
    if parts.path.startswith("/lambda-url/"):
        return parts.path.split("/")[2]
    return str(parts.hostname).split(".", 1)[0]


def localhost_names_resolve() -> bool:
    """Whether this machine's system resolver (as urllib uses it) maps `*.localhost` names."""
    try:
        socket.getaddrinfo("probe.lambda-url.us-east-1.localhost", None)
    except OSError:
        return False
    return True


def url_pattern(port: int, form: str | None = None) -> re.Pattern[str]:
    """A `FunctionUrl` in `form` (default: the one Lamina picks for this machine); group 1 is
    the URL id."""
    form = form or ("host" if localhost_names_resolve() else "path")
    if form == "host":
        return re.compile(rf"^http://([a-z0-9]{{32}})\.lambda-url\.us-east-1\.localhost:{port}/$")
    return re.compile(rf"^http://127\.0\.0\.1:{port}/lambda-url/([a-z0-9]{{32}})/$")


def host_header(server: LaminaServer, function_url: str) -> str:
    """The Host of a URL's host form, whichever form Lamina handed out."""
    return f"{url_id(function_url)}.lambda-url.us-east-1.localhost:{server.port}"


def fetch(
    server: LaminaServer,
    function_url: str,
    path: str = "/",
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    by_host: bool = False,
) -> Reply:
    """Request `path` of a URL, path-based unless `by_host` (then with its Host header)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        target = path if by_host else f"/lambda-url/{url_id(function_url)}{path}"
        sent = dict(headers or {})
        if by_host:
            sent["Host"] = host_header(server, function_url)
        connection.request(method, target, body=body, headers=sent)
        return Reply(connection.getresponse())
    finally:
        connection.close()


def allow_public(client: Any, name: str, qualifier: str | None = None) -> None:
    """The two statements AWS requires before a NONE URL answers anyone."""
    where = {"Qualifier": qualifier} if qualifier else {}
    client.add_permission(
        FunctionName=name,
        StatementId="url-public",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="NONE",
        **where,
    )
    client.add_permission(
        FunctionName=name,
        StatementId="url-invoke",
        Action="lambda:InvokeFunction",
        Principal="*",
        InvokedViaFunctionUrl=True,
        **where,
    )


def send_json(
    server: LaminaServer, function_url: str, value: Any, headers: dict[str, str] | None = None
) -> Reply:
    body = json.dumps(value).encode()
    sent = {"content-type": "application/json", **(headers or {})}
    return fetch(server, function_url, method="POST", body=body, headers=sent)
