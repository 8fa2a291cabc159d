"""The console in development mode, in a real browser: create from a blueprint, edit and
deploy, test, configure, alias, graphs, triggers, async redrive, power tuning."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import PHONE, screenshot
from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE
from tests.support.peers import MotoServer
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

FLAKY_HANDLER = """
import os

def handler(event, context):
    if os.environ.get("FAIL") == "1":
        raise RuntimeError("failing on purpose")
    print("handled", event)
    return {"ok": True}
"""


@pytest.fixture(scope="module")
def lambda_client(console_server: LaminaServer) -> Iterator[Any]:
    client = console_server.client("lambda")
    yield client
    client.close()


def create_from_blueprint(page: Any, server: LaminaServer, name: str, blueprint: str) -> None:
    page.goto(f"{server.endpoint}/console")
    page.get_by_label("Function name").fill(name)
    page.get_by_label("Execution role").fill(ROLE)
    page.get_by_label("A blueprint").check()
    page.get_by_label("Blueprint", exact=True).select_option(blueprint)
    page.get_by_role("button", name="Create function").click()
    page.wait_for_url(re.compile(f"/console/functions/{name}$"))


def test_blueprint_edit_deploy_and_test(page: Any, console_server: LaminaServer) -> None:
    name = f"hello-{uuid.uuid4().hex[:8]}"
    create_from_blueprint(page, console_server, name, "python-hello")
    assert page.get_by_role("status").first.inner_text().startswith(f"Created {name}")
    assert "def handler" in page.locator("#viewer").inner_text()
    screenshot(page, "code")

    page.get_by_text("Edit app.py and deploy").click()
    source = page.get_by_role("textbox", name="app.py")
    source.fill(source.input_value().replace("Hello, {name}!", "Howdy, {name}!"))
    page.get_by_role("button", name="Deploy").click()
    assert page.get_by_role("status").first.inner_text() == "Deployed app.py."
    assert "Howdy" in page.locator("#viewer").inner_text()

    page.get_by_role("link", name="Test").click()
    page.get_by_label("Event JSON").fill(json.dumps({"name": "console"}))
    page.get_by_role("button", name="Test", exact=True).click()
    status = page.locator("#invoke-status")
    status.wait_for()
    assert status.inner_text().startswith("Succeeded")
    assert json.loads(page.locator("#payload").inner_text())["message"] == "Howdy, console!"
    log = page.locator("#log-tail").inner_text()
    assert "greeting console" in log and "REPORT RequestId" in log
    report = page.locator("#report").inner_text()
    assert "Billed duration" in report and "Max memory used" in report
    screenshot(page, "test")

    # A saved test event comes back by name.
    page.get_by_label("Name to save it as").fill("greet-console")
    page.get_by_role("button", name="Save event").click()
    assert "Saved the test event greet-console." in page.get_by_role("status").first.inner_text()
    assert json.loads(page.get_by_label("Event JSON").input_value()) == {"name": "console"}

    # A template: the event Lamina's SQS poller would send this function.
    page.get_by_label("Start from a template").select_option("sqs")
    page.wait_for_url(re.compile(r"\?template=sqs$"))
    records = json.loads(page.get_by_label("Event JSON").input_value())["Records"]
    assert {record["eventSource"] for record in records} == {"aws:sqs"}

    page.goto(f"{console_server.endpoint}/console")
    page.get_by_label("Search functions by name").fill(name[:9])
    row = page.locator("#function-rows tr", has_text=name)
    assert "python3.12" in row.inner_text() and "Active" in row.inner_text()
    page.wait_for_url(re.compile(rf"\?q={name[:9]}$"))  # htmx filtered and kept the URL
    assert row.locator("td").nth(5).inner_text() == "1"  # the test invocation, counted
    screenshot(page, "functions")
    page.set_viewport_size(PHONE)
    screenshot(page, "functions-phone")


def test_memory_validation_error(page: Any, console_server: LaminaServer) -> None:
    name = f"memory-{uuid.uuid4().hex[:8]}"
    create_from_blueprint(page, console_server, name, "node-hello")
    page.get_by_role("link", name="Configuration").click()
    page.get_by_label("Memory (MB)").fill("20000")
    page.get_by_role("button", name="Save", exact=True).click()
    error = page.locator("#memorySize-error")
    assert error.inner_text() == (
        "ValidationException: 1 validation error detected: Value '20000' at 'memorySize' "
        "failed to satisfy constraint: Member must have value less than or equal to 10240"
    )
    assert page.get_by_label("Memory (MB)").get_attribute("aria-invalid") == "true"
    screenshot(page, "configuration")
    page.get_by_label("Memory (MB)").fill("256")
    page.get_by_role("button", name="Save", exact=True).click()
    assert page.get_by_role("status").first.inner_text() == "Saved the configuration."
    assert page.get_by_label("Memory (MB)").input_value() == "256"


def test_alias_and_graph(page: Any, console_server: LaminaServer, lambda_client: Any) -> None:
    name = f"graph-{uuid.uuid4().hex[:8]}"
    create_from_blueprint(page, console_server, name, "python-hello")
    page.get_by_role("link", name="Versions and aliases").click()
    page.get_by_role("button", name="Publish new version").click()
    assert page.get_by_role("status").first.inner_text() == "Published version 1."
    page.get_by_label("Alias name").fill("live")
    page.get_by_label("Version", exact=True).select_option("1")
    page.get_by_role("button", name="Save alias").click()
    assert page.get_by_role("status").first.inner_text() == "Created the alias live."
    assert "live" in page.locator("#alias-rows").inner_text()

    # Weighted routing: version 2 takes a fifth of the alias's traffic.
    page.get_by_role("link", name="Configuration").click()
    page.get_by_label("Timeout (s)").fill("5")
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_role("link", name="Versions and aliases").click()
    page.get_by_role("button", name="Publish new version").click()
    assert page.get_by_role("status").first.inner_text() == "Published version 2."
    page.get_by_label("Alias name").fill("live")
    page.get_by_label("Version", exact=True).select_option("1")
    page.get_by_label("Also route to version").fill("2")
    page.get_by_label("Its weight (%)").fill("20")
    page.get_by_label("The alias exists: update it").check()
    page.get_by_role("button", name="Save alias").click()
    assert page.get_by_role("status").first.inner_text() == "Updated the alias live."
    row = page.locator("#alias-rows tr", has_text="live").inner_text()
    assert "version 2: 20%" in row
    screenshot(page, "versions")

    for n in range(12):
        answer = lambda_client.invoke(
            FunctionName=name, Qualifier="live", Payload=json.dumps({"n": n})
        )
        answer["Payload"].read()  # an unread payload holds its connection until collected
    page.get_by_role("link", name="Monitor").click()

    def plotted() -> bool:
        page.reload()
        caption = page.locator("#chart-invocations .points")
        caption.wait_for()
        page.wait_for_function(
            "document.querySelector('#chart-invocations .points').textContent !== 'No data yet.'"
        )
        return int(caption.get_attribute("data-points") or 0) > 0

    wait_until(plotted, timeout=60, interval=1, message="no invocation points plotted")
    assert page.locator("#chart-invocations canvas").count() == 1
    page.wait_for_function("document.getElementById('cost-requests').textContent === '12'")
    page.locator("#tail").get_by_text("greeting").first.wait_for()
    screenshot(page, "monitor")


def test_redrive_failed_event(page: Any, console_server: LaminaServer, lambda_client: Any) -> None:
    name = f"flaky-{uuid.uuid4().hex[:8]}"
    lambda_client.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": FLAKY_HANDLER})},
        Environment={"Variables": {"FAIL": "1"}},
    )
    lambda_client.get_waiter("function_active_v2").wait(FunctionName=name)
    lambda_client.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    sent = lambda_client.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"n": 1}')
    assert sent["Payload"].read() == b""
    request_id = sent["ResponseMetadata"]["RequestId"]
    page.goto(f"{console_server.endpoint}/console/functions/{name}/async")

    def failed_count() -> int:
        page.reload()
        return int(page.locator("strong[data-state=failed]").inner_text())

    wait_until(lambda: failed_count() == 1, timeout=60, interval=0.5, message="never failed")
    row = page.locator("#event-rows tr", has_text=request_id)
    assert "failing on purpose" in row.inner_text()
    screenshot(page, "async-events")

    lambda_client.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"FAIL": "0"}}
    )
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    row.get_by_role("button", name=f"Redrive event {request_id}").click()
    assert page.get_by_role("status").first.inner_text() == (
        f"Redrove event {request_id}: it is queued again."
    )

    def drained() -> bool:
        page.reload()
        counts = page.locator("#event-counts").inner_text()
        return "No asynchronous events" in page.locator("#event-rows").inner_text() and bool(counts)

    wait_until(drained, timeout=60, interval=0.5, message="the redriven event never ran")


def test_function_url_trigger(page: Any, console_server: LaminaServer) -> None:
    name = f"api-{uuid.uuid4().hex[:8]}"
    create_from_blueprint(page, console_server, name, "python-http-api")
    page.get_by_role("link", name="Triggers").click()
    page.get_by_label("Auth type").select_option("NONE")
    page.get_by_label("CORS allowed origins").fill("https://example.com")
    page.get_by_role("button", name="Create a function URL").click()
    assert page.get_by_role("status").first.inner_text() == "Saved the function URL."
    assert "lambda-url" in page.locator("#function-url").inner_text()
    screenshot(page, "triggers")


def test_power_tuning(page: Any, console_server: LaminaServer) -> None:
    name = f"tune-{uuid.uuid4().hex[:8]}"
    create_from_blueprint(page, console_server, name, "python-hello")
    page.get_by_role("link", name="Power tuning").click()
    page.get_by_label("Memory sizes (MB)").fill("128, 512")
    page.get_by_label("Measured runs per size").fill("2")
    page.get_by_role("button", name="Run power tuning").click()
    results = page.locator("#tuning-results")
    results.wait_for(timeout=120_000)
    text = results.inner_text()
    assert "128 MB" in text and "512 MB" in text and "cheapest" in text
    screenshot(page, "tuning")


def test_works_without_javascript(browser: Any, console_server: LaminaServer) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        name = f"nojs-{uuid.uuid4().hex[:8]}"
        create_from_blueprint(page, console_server, name, "node-hello")
        page.get_by_role("link", name="Test").click()
        page.get_by_label("Event JSON").fill(json.dumps({"name": "plain form"}))
        page.get_by_role("button", name="Test", exact=True).click()
        assert page.locator("#invoke-status").inner_text().startswith("Succeeded")
        assert "plain form" in page.locator("#payload").inner_text()
    finally:
        context.close()


def test_create_from_a_zip_and_a_blueprint_with_its_schedule(
    page: Any, console_server: LaminaServer, tmp_path: Any
) -> None:
    archive = tmp_path / "echo.zip"
    archive.write_bytes(make_zip({"echo.py": "def handler(event, context):\n    return event\n"}))
    name = f"zip-{uuid.uuid4().hex[:8]}"
    page.goto(f"{console_server.endpoint}/console")
    page.get_by_label("Function name").fill(name)
    page.get_by_label("Execution role").fill(ROLE)
    page.get_by_label("A .zip file").check()
    page.get_by_label("Deployment package (.zip)").set_input_files(str(archive))
    page.get_by_label("Handler (for a .zip)").fill("echo.handler")
    page.get_by_role("button", name="Create function").click()
    page.wait_for_url(re.compile(f"/console/functions/{name}$"))
    assert "echo.py" in page.locator(".tree").inner_text()

    # A bad name: the API's refusal, shown in the form with what was typed kept.
    page.goto(f"{console_server.endpoint}/console")
    page.get_by_label("Function name").fill(name)  # taken
    page.get_by_label("Execution role").fill(ROLE)
    page.get_by_role("button", name="Create function").click()
    assert page.locator("#create-error").inner_text() == (
        f"ResourceConflictException: Function already exist: {name}"
    )
    assert page.get_by_label("Function name").input_value() == name

    scheduled = f"job-{uuid.uuid4().hex[:8]}"
    page.get_by_label("Function name").fill(scheduled)
    page.get_by_label("Blueprint", exact=True).select_option("python-scheduled-job")
    page.get_by_label("Add the blueprint's trigger too").check()
    page.get_by_role("button", name="Create function").click()
    page.wait_for_url(re.compile(f"/console/functions/{scheduled}$"))
    assert (
        f"Schedule rule {scheduled}-schedule added."
        in page.get_by_role("status").first.inner_text()
    )
    page.get_by_role("link", name="Triggers").click()
    rules = page.get_by_role("region", name="EventBridge rules and schedules").inner_text()
    assert f"{scheduled}-schedule" in rules and "ENABLED" in rules


def test_event_source_mapping_trigger(
    page: Any,
    console_server: LaminaServer,
    lambda_client: Any,
    moto: MotoServer,
    request: pytest.FixtureRequest,
) -> None:
    sqs = moto.client("sqs")
    request.addfinalizer(sqs.close)  # a client left to the garbage collector warns
    queue_url = sqs.create_queue(QueueName=f"orders-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    name = f"consumer-{uuid.uuid4().hex[:8]}"
    create_from_blueprint(page, console_server, name, "python-sqs-consumer")
    mapping = lambda_client.create_event_source_mapping(
        FunctionName=name,
        EventSourceArn=queue_arn,
        BatchSize=10,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"order": 1}))
    page.get_by_role("link", name="Triggers").click()
    mappings = page.get_by_role("region", name="Event source mappings")

    def processed() -> bool:
        page.reload()
        return "OK" in mappings.locator("tbody").inner_text()

    wait_until(processed, timeout=60, interval=0.5, message="the mapping never ran")
    row = mappings.locator("tbody tr", has_text=queue_arn)
    assert "Enabled" in row.inner_text()
    screenshot(page, "triggers-mapping")
    row.get_by_role("button", name="Disable").click()
    assert page.get_by_role("status").first.inner_text() == (
        f"Disabling the mapping {mapping['UUID']}."
    )
    wait_until(
        lambda: lambda_client.get_event_source_mapping(UUID=mapping["UUID"])["State"] == "Disabled",
        timeout=30,
        message="the mapping was never disabled",
    )
