"""Every blueprint runs: deployed to a real server as the console or `lamina init` would
deploy it, then invoked with the event its trigger sends (the event templates, built by
Lamina's own event builders), its real output checked. The HTTP API blueprints also answer
through a real function URL."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from lamina.arns import Account
from lamina.blueprints import Blueprint, UnknownBlueprint, catalog, get
from lamina.blueprints.events import TEMPLATES, template
from tests.support.function_urls import allow_public, fetch, send_json
from tests.support.lambda_api import ROLE, call, invoke, log_tail
from tests.support.server import LaminaServer

ACCOUNT = Account("123456789012", "us-east-1")
KINDS = {"url", "sqs", "schedule", "kinesis", "dynamodb"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    instance = LaminaServer(tmp_path_factory.mktemp("blueprints") / "data").start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def client(server: LaminaServer) -> Iterator[Any]:
    lambda_client = server.client()
    yield lambda_client
    lambda_client.close()


def deploy(client: Any, blueprint: Blueprint) -> str:
    name = f"{blueprint.name}-{uuid.uuid4().hex[:8]}"
    client.create_function(
        FunctionName=name,
        Runtime=blueprint.runtime,
        Role=ROLE,
        Handler=blueprint.handler,
        Timeout=blueprint.timeout,
        MemorySize=blueprint.memory_size,
        Code={"ZipFile": blueprint.zip_bytes()},
    )
    return name


def by_language(stem: str) -> list[str]:
    return [f"python-{stem}", f"node-{stem}"]


def test_the_catalog_has_a_starter_set_for_python_and_node() -> None:
    names = [blueprint.name for blueprint in catalog()]
    for stem in ("hello", "http-api", "sqs-consumer", "scheduled-job", "stream-processor"):
        assert set(by_language(stem)) <= set(names)
    for blueprint in catalog():
        assert blueprint.description and blueprint.files
        assert blueprint.runtime in {"python3.12", "nodejs20.x"}
        if blueprint.trigger is not None:
            assert blueprint.trigger.kind in KINDS and blueprint.trigger.description
            assert blueprint.event_template in TEMPLATES
    consumer = get("python-sqs-consumer").trigger
    assert consumer is not None
    assert consumer.settings["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    with pytest.raises(UnknownBlueprint, match="No blueprint named nope"):
        get("nope")


def test_a_blueprint_zips_to_the_same_bytes_every_time() -> None:
    blueprint = get("node-http-api")
    assert blueprint.zip_bytes() == blueprint.zip_bytes()


@pytest.mark.parametrize("name", by_language("hello"))
def test_hello_greets(client: Any, name: str) -> None:
    blueprint = get(name)
    function = deploy(client, blueprint)
    response, result = call(
        client, function, blueprint.sample_event(ACCOUNT, function), LogType="Tail"
    )
    assert "FunctionError" not in response, result
    assert result == {"message": "Hello, Lamina!", "function": function, "region": "us-east-1"}
    assert "greeting Lamina" in log_tail(response)


@pytest.mark.parametrize("name", by_language("http-api"))
def test_http_api_answers_its_url_event_and_its_url(
    server: LaminaServer, client: Any, name: str
) -> None:
    blueprint = get(name)
    function = deploy(client, blueprint)
    event = blueprint.sample_event(ACCOUNT, function)
    result = invoke(client, function, event)
    assert result["statusCode"] == 200
    assert json.loads(result["body"]) == {"path": "/items", "received": {"hello": "world"}}

    assert blueprint.trigger is not None
    url = client.create_function_url_config(FunctionName=function, **blueprint.trigger.settings)
    allow_public(client, function)
    reply = fetch(server, url["FunctionUrl"], "/hi?name=Ada")
    assert (reply.status, json.loads(reply.body)) == (
        200,
        {"message": "Hello, Ada!", "path": "/hi"},
    )
    reply = send_json(server, url["FunctionUrl"], {"n": 1})
    assert json.loads(reply.body) == {"path": "/", "received": {"n": 1}}
    reply = fetch(server, url["FunctionUrl"], "/", method="DELETE")
    assert reply.status == 405


@pytest.mark.parametrize("name", by_language("sqs-consumer"))
def test_sqs_consumer_reports_only_the_failed_message(client: Any, name: str) -> None:
    blueprint = get(name)
    function = deploy(client, blueprint)
    event = blueprint.sample_event(ACCOUNT, function)
    assert invoke(client, function, event) == {"batchItemFailures": []}
    event["Records"][1]["body"] = "not json"
    failed_id = event["Records"][1]["messageId"]
    assert invoke(client, function, event) == {"batchItemFailures": [{"itemIdentifier": failed_id}]}


@pytest.mark.parametrize("name", by_language("scheduled-job"))
def test_scheduled_job_runs_for_its_tick(client: Any, name: str) -> None:
    blueprint = get(name)
    function = deploy(client, blueprint)
    event = blueprint.sample_event(ACCOUNT, function)
    assert event["detail-type"] == "Scheduled Event"
    assert invoke(client, function, event) == {
        "job": "done",
        "scheduledFor": event["time"],
        "rule": f"arn:aws:events:us-east-1:123456789012:rule/{function}-schedule",
    }


@pytest.mark.parametrize("name", by_language("stream-processor"))
@pytest.mark.parametrize("source", ["kinesis", "dynamodb"])
def test_stream_processor_stops_at_the_first_failed_record(
    client: Any, name: str, source: str
) -> None:
    function = deploy(client, get(name))
    event = template(source, ACCOUNT, function)
    assert invoke(client, function, event) == {"batchItemFailures": [], "handled": 2}
    second = event["Records"][1]
    if source == "kinesis":
        second["kinesis"]["data"] = base64.b64encode(b"not json").decode()
        sequence = second["kinesis"]["sequenceNumber"]
    else:
        del second["dynamodb"]["Keys"]
        sequence = second["dynamodb"]["SequenceNumber"]
    assert invoke(client, function, event) == {
        "batchItemFailures": [{"itemIdentifier": sequence}],
        "handled": 1,
    }
