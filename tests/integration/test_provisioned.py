"""Provisioned concurrency made real, over HTTP: READY, pre-initialised environments, spillover.

The module's server reaps idle on-demand environments after IDLE_TIMEOUT_S, so the tests can
also show that provisioned ones are never reaped.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.environments import alive, handlers_zip, in_parallel, wait_until_gone
from tests.support.lambda_api import ROLE, invoke, log_tail
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

IDLE_TIMEOUT_S = 1
PROVISIONED = "provisioned-concurrency"
ON_DEMAND = "on-demand"


@pytest.fixture(scope="module")
def provisioned_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    instance = LaminaServer(
        tmp_path_factory.mktemp("provisioned") / "data",
        env={"LAMINA_IDLE_TIMEOUT": str(IDLE_TIMEOUT_S)},
    )
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def client(provisioned_server: LaminaServer) -> Iterator[Any]:
    instance = provisioned_server.client("lambda", max_pool_connections=8)
    yield instance
    instance.close()


@pytest.fixture
def function(client: Any, unique_name: Callable[[str], str]) -> Iterator[Callable[..., str]]:
    """Published functions of the engine tests' handlers; deleted (and torn down) after."""
    created: list[str] = []

    def make(code: bytes | None = None, **overrides: Any) -> str:
        name = unique_name("pc")
        client.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.describe",
            Code={"ZipFile": code or handlers_zip()},
            Timeout=10,
            Publish=True,
            **overrides,
        )
        created.append(name)
        return name

    yield make
    for name in created:
        client.delete_function(FunctionName=name)


def settled(client: Any, name: str, qualifier: str, timeout_s: float = 30) -> dict[str, Any]:
    """The config once the engine has finished with it (no longer IN_PROGRESS)."""

    def done() -> dict[str, Any] | None:
        config: dict[str, Any] = client.get_provisioned_concurrency_config(
            FunctionName=name, Qualifier=qualifier
        )
        return None if config["Status"] == "IN_PROGRESS" else config

    return wait_until(done, timeout=timeout_s, message=f"{name}:{qualifier} stayed IN_PROGRESS")


def provisioned_run(client: Any, name: str, **kwargs: Any) -> dict[str, Any] | None:
    """The result of one call, if a provisioned environment served it."""
    result: dict[str, Any] = invoke(client, name, **kwargs)
    return result if result["init"] == PROVISIONED else None


def provision(client: Any, name: str, qualifier: str, count: int) -> dict[str, Any]:
    client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier=qualifier, ProvisionedConcurrentExecutions=count
    )
    config = settled(client, name, qualifier)
    assert config["Status"] == "READY", config
    return config


def test_config_becomes_ready_with_initialised_environments(
    client: Any, function: Callable[..., str]
) -> None:
    name = function()
    config = provision(client, name, "1", 2)
    assert config["RequestedProvisionedConcurrentExecutions"] == 2
    assert config["AllocatedProvisionedConcurrentExecutions"] == 2
    assert config["AvailableProvisionedConcurrentExecutions"] == 2
    assert "StatusReason" not in config
    listed = client.list_provisioned_concurrency_configs(FunctionName=name)
    assert [entry["Status"] for entry in listed["ProvisionedConcurrencyConfigs"]] == ["READY"]
    first = invoke(client, name, Qualifier="1")
    assert first["init"] == PROVISIONED
    assert first["version"] == "1"
    assert invoke(client, name, Qualifier="1")["init"] == PROVISIONED
    # Other qualifiers are not provisioned.
    assert invoke(client, name)["init"] == ON_DEMAND


def test_traffic_above_provisioned_spills_over_to_on_demand(
    client: Any, function: Callable[..., str]
) -> None:
    name = function()
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    provision(client, name, "live", 1)
    results = in_parallel([lambda: invoke(client, f"{name}:live", {"sleep": 1.5})] * 3)
    assert sorted(result["init"] for result in results) == [ON_DEMAND, ON_DEMAND, PROVISIONED]
    assert {result["version"] for result in results} == {"1"}
    assert len({result["stream"] for result in results}) == 3


def test_provisioned_environments_are_never_reaped(
    client: Any, function: Callable[..., str]
) -> None:
    name = function()
    provision(client, name, "1", 1)
    on_demand = invoke(client, name)
    provisioned = invoke(client, name, Qualifier="1")
    assert provisioned["init"] == PROVISIONED
    # The on-demand environment idles out; the provisioned one, idle as long and then some,
    # stays and keeps serving.
    wait_until_gone(on_demand["process"])
    time.sleep(IDLE_TIMEOUT_S + 0.5)
    assert alive(provisioned["process"])
    again = invoke(client, name, Qualifier="1")
    assert again["stream"] == provisioned["stream"]


def test_deleting_the_config_tears_its_environments_down(
    client: Any, function: Callable[..., str]
) -> None:
    name = function()
    provision(client, name, "1", 1)
    provisioned = invoke(client, name, Qualifier="1")
    assert provisioned["init"] == PROVISIONED
    client.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    wait_until_gone(provisioned["process"])
    assert invoke(client, name, Qualifier="1")["init"] == ON_DEMAND


def test_a_failing_init_marks_the_config_failed(client: Any, function: Callable[..., str]) -> None:
    broken = make_zip({"app.py": "raise RuntimeError('no database configured')\n"})
    name = function(code=broken)
    client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=2
    )
    config = settled(client, name, "1")
    assert config["Status"] == "FAILED"
    assert config["AllocatedProvisionedConcurrentExecutions"] == 0
    assert config["StatusReason"] == "FUNCTION_ERROR_INIT_FAILURE"
    # A failed config is not retried behind the user's back.
    time.sleep(1.5)
    assert settled(client, name, "1")["Status"] == "FAILED"


def test_an_alias_moved_to_another_version_is_provisioned_again(
    client: Any, function: Callable[..., str]
) -> None:
    name = function(Environment={"Variables": {"STAGE": "one"}})
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    provision(client, name, "live", 1)
    old = invoke(client, f"{name}:live")
    assert (old["init"], old["stage"]) == (PROVISIONED, "one")
    client.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"STAGE": "two"}}
    )
    client.get_waiter("function_updated_v2").wait(FunctionName=name)
    version = client.publish_version(FunctionName=name)["Version"]
    client.update_alias(FunctionName=name, Name="live", FunctionVersion=version)
    wait_until_gone(old["process"])
    new = wait_until(
        lambda: provisioned_run(client, f"{name}:live"),
        timeout=30,
        message="no provisioned environment of the new version served the alias",
    )
    assert (new["version"], new["stage"]) == (version, "two")


def test_configs_are_provisioned_again_after_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with running(LaminaServer(data_dir)) as lambda_client:
        lambda_client.create_function(
            FunctionName="kept",
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.describe",
            Code={"ZipFile": handlers_zip()},
            Publish=True,
        )
        provision(lambda_client, "kept", "1", 1)
        before = invoke(lambda_client, "kept", Qualifier="1")
        assert before["init"] == PROVISIONED
    wait_until_gone(before["process"])
    # The same data directory, served again (on a port of its own).
    with running(LaminaServer(data_dir)) as lambda_client:
        after = wait_until(
            lambda: provisioned_run(lambda_client, "kept", Qualifier="1"),
            timeout=30,
            message="no provisioned environment served version 1 after the restart",
        )
        assert after["stream"] != before["stream"]
        assert settled(lambda_client, "kept", "1")["Status"] == "READY"


@contextlib.contextmanager
def running(server: LaminaServer) -> Iterator[Any]:
    """A started server's Lambda client; the server stops (and its log closes) on exit."""
    try:
        server.start()
        lambda_client = server.client("lambda")
        try:
            yield lambda_client
        finally:
            lambda_client.close()
    finally:
        server.stop()


def test_provisioned_concurrency_needs_a_published_version(
    client: Any, function: Callable[..., str]
) -> None:
    name = function()
    with pytest.raises(ClientError) as excinfo:
        client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="$LATEST", ProvisionedConcurrentExecutions=1
        )
    assert excinfo.value.response["Error"]["Code"] == "InvalidParameterValueException"


def test_provisioned_invocations_report_no_init_duration(
    client: Any, function: Callable[..., str]
) -> None:
    name = function()
    provision(client, name, "1", 1)
    response = client.invoke(FunctionName=name, Qualifier="1", Payload=b"{}", LogType="Tail")
    assert json.loads(response["Payload"].read())["init"] == PROVISIONED
    report = next(line for line in log_tail(response).splitlines() if line.startswith("REPORT"))
    # The environment was initialised before any call, so no call carries (or pays) its init.
    assert "Init Duration" not in report
