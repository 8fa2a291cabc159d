"""Which `FunctionUrl` Lamina hands out: one every client on this machine can call as it is.

By default the host form (`<id>.lambda-url.<region>.localhost`) where the system resolver maps
`*.localhost` to loopback, else the path form (`/lambda-url/<id>/`); LAMINA_FUNCTION_URL_FORM
forces either. Both forms are served whichever is handed out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.archives import make_zip
from tests.support.function_urls import (
    HANDLERS,
    allow_public,
    fetch,
    host_header,
    localhost_names_resolve,
    url_id,
    url_pattern,
)
from tests.support.lambda_api import ROLE
from tests.support.server import LaminaServer

FORMS = ("host", "path")


def deploy(client: Any, name: str) -> str:
    """A function with a public URL; returns its FunctionUrl as CreateFunctionUrlConfig did."""
    client.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.echo",
        Code={"ZipFile": make_zip({"app.py": HANDLERS})},
    )
    allow_public(client, name)
    return str(client.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"])


def every_url_answer(client: Any, name: str) -> list[str]:
    """The FunctionUrl as Get, Update and List return it."""
    got = client.get_function_url_config(FunctionName=name)["FunctionUrl"]
    updated = client.update_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    listed = [
        c["FunctionUrl"]
        for c in client.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]
    ]
    return [got, updated, *listed]


def served_both_ways(server: LaminaServer, function_url: str) -> None:
    by_host = fetch(server, function_url, "/both?way=host", by_host=True)
    by_path = fetch(server, function_url, "/both?way=path")
    for reply, way in ((by_host, "host"), (by_path, "path")):
        assert reply.status == 200, reply.body
        event = reply.json()["event"]
        assert (event["rawPath"], event["queryStringParameters"]) == ("/both", {"way": way})
    assert by_host.json()["event"]["headers"]["host"] == host_header(server, function_url)


@pytest.fixture(scope="module")
def forced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LaminaServer]]:
    """One server per forced form."""
    servers = {
        form: LaminaServer(
            tmp_path_factory.mktemp(f"form-{form}") / "data", {"LAMINA_FUNCTION_URL_FORM": form}
        ).start()
        for form in FORMS
    }
    yield servers
    for server in servers.values():
        server.stop()


def test_the_default_url_is_callable_with_plain_urllib(
    server: LaminaServer, lambda_client: Any, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("default")
    function_url = deploy(lambda_client, name)
    # The host form exactly where this machine's resolver maps *.localhost, else the path form.
    assert url_pattern(server.port).match(function_url), function_url
    expected = "host" if localhost_names_resolve() else "path"
    assert url_pattern(server.port, expected).match(function_url)
    assert every_url_answer(lambda_client, name) == [function_url] * 3
    # No Host header tricks: urllib resolves the URL itself.
    with urllib.request.urlopen(f"{function_url}hello?from=urllib", timeout=60) as response:
        assert response.status == 200
        event = json.loads(response.read())["event"]
    assert (event["rawPath"], event["queryStringParameters"]) == ("/hello", {"from": "urllib"})
    assert event["requestContext"]["domainName"] == (
        f"{url_id(function_url)}.lambda-url.us-east-1.localhost"
    )
    served_both_ways(server, function_url)


@pytest.mark.parametrize("form", FORMS)
def test_a_forced_form_is_handed_out_and_both_are_served(
    forced: dict[str, LaminaServer], form: str
) -> None:
    server = forced[form]
    client = server.client()
    try:
        function_url = deploy(client, "forced")
        assert url_pattern(server.port, form).match(function_url), function_url
        assert every_url_answer(client, "forced") == [function_url] * 3
    finally:
        client.close()
    served_both_ways(server, function_url)
    if form == "path":
        with urllib.request.urlopen(f"{function_url}x", timeout=60) as response:
            assert json.loads(response.read())["event"]["rawPath"] == "/x"


def doctor(**env: str) -> list[str]:
    """`lamina doctor`'s lines about function URLs."""
    result = subprocess.run(
        [sys.executable, "-m", "lamina", "doctor"],
        env={**os.environ, "LAMINA_PORT": "9123", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Function URLs:"))
    return lines[start:]


def test_doctor_names_the_form_in_use_and_how_to_get_the_other() -> None:
    host_form = "http://<url-id>.lambda-url.us-east-1.localhost:9123/"
    path_form = "http://127.0.0.1:9123/lambda-url/<url-id>/"
    resolves = localhost_names_resolve()
    lines = doctor()
    if resolves:
        assert lines[0] == f"Function URLs: the host form, e.g. {host_form}"
        assert lines[2:] == [
            f"  also served: the path form, {path_form}",
            "  to hand out the path form, set LAMINA_FUNCTION_URL_FORM=path",
        ]
    else:
        assert lines[0] == f"Function URLs: the path form, e.g. {path_form}"
        assert lines[2] == f"  also served: the host form, {host_form} (with that Host header)"
        assert lines[3] == (
            "  to hand out the host form, let the system resolver map *.localhost to loopback:"
        )
        assert "libnss-myhostname" in lines[4]
        assert lines[-2:] == [
            "    or set LAMINA_FUNCTION_URL_FORM=host; then only clients that resolve *.localhost",
            "    themselves (curl, browsers) can call the URLs as returned",
        ]
    assert lines[1].startswith("  why: the system resolver ")

    forced_host = doctor(LAMINA_FUNCTION_URL_FORM="host")
    assert forced_host[:2] == [
        "Function URLs: the host form, e.g. http://<url-id>.lambda-url.us-east-1.localhost:9123/",
        "  why: LAMINA_FUNCTION_URL_FORM=host",
    ]
    assert forced_host[2].startswith("  resolver: the system resolver ")
    assert forced_host[3:] == [
        "  also served: the path form, http://127.0.0.1:9123/lambda-url/<url-id>/",
        "  to hand out the path form, set LAMINA_FUNCTION_URL_FORM=path",
    ]
    forced_path = doctor(LAMINA_FUNCTION_URL_FORM="path")
    assert forced_path[:2] == [
        "Function URLs: the path form, e.g. http://127.0.0.1:9123/lambda-url/<url-id>/",
        "  why: LAMINA_FUNCTION_URL_FORM=path",
    ]


def test_an_unknown_form_is_refused(tmp_path_factory: pytest.TempPathFactory) -> None:
    server = LaminaServer(
        tmp_path_factory.mktemp("bad-form") / "data", {"LAMINA_FUNCTION_URL_FORM": "dns"}
    )
    with pytest.raises(RuntimeError, match="LAMINA_FUNCTION_URL_FORM must be auto, host or path"):
        server.start()
    server.stop()
