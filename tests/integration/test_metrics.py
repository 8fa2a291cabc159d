"""Lambda's metrics, read back through every door: Prometheus' `/metrics`, boto3's and the AWS
CLI's CloudWatch client, and CloudWatch's query and CBOR protocols."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.support import netns
from tests.support.archives import make_zip
from tests.support.aws_cli import run_aws
from tests.support.lambda_api import call
from tests.support.reachable import elsewhere, http_server_in
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

HANDLER = """
import json, time, urllib.request

def handler(event, context):
    if event.get("barrier"):
        # Hold the invocation until the test's barrier has seen all of its peers arrive.
        urllib.request.urlopen(event["barrier"], timeout=30).read()
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"ok": True}
"""


@pytest.fixture
def function(create_function: Callable[..., dict[str, Any]]) -> str:
    name: str = create_function(Code={"ZipFile": make_zip({"app.py": HANDLER})})["FunctionName"]
    return name


def scrape(server: LaminaServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"{server.endpoint}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def window() -> dict[str, datetime]:
    now = datetime.now(UTC)
    return {"StartTime": now - timedelta(minutes=30), "EndTime": now + timedelta(minutes=2)}


def statistic(
    cloudwatch: Any, metric: str, dimensions: dict[str, str], stat: str = "Sum", **extra: Any
) -> float | None:
    """The statistic over the last half hour, in one datapoint; None without data."""
    datapoints = cloudwatch.get_metric_statistics(
        Namespace="AWS/Lambda",
        MetricName=metric,
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
        Period=3600,
        Statistics=[stat],
        **window(),
        **extra,
    )["Datapoints"]
    if not datapoints:
        return None
    assert len(datapoints) <= 2  # the half hour may straddle an hour's start
    return float(sum(point[stat] for point in datapoints))


@pytest.fixture(scope="module")
def cloudwatch(server: LaminaServer) -> Iterator[Any]:
    client = server.client("cloudwatch")
    yield client
    client.close()


# ------------------------------------------------------------------------- tests


def test_successes_errors_and_durations(
    server: LaminaServer, lambda_client: Any, cloudwatch: Any, function: str
) -> None:
    for _ in range(3):
        assert "FunctionError" not in call(lambda_client, function, {})[0]
    for _ in range(2):
        assert call(lambda_client, function, {"fail": True})[0]["FunctionError"] == "Unhandled"

    by_function = {"FunctionName": function}
    assert statistic(cloudwatch, "Invocations", by_function) == 5
    assert statistic(cloudwatch, "Errors", by_function) == 2
    assert statistic(cloudwatch, "Errors", by_function, "SampleCount") == 5
    assert statistic(cloudwatch, "Duration", by_function, "SampleCount") == 5
    [duration] = cloudwatch.get_metric_statistics(
        Namespace="AWS/Lambda",
        MetricName="Duration",
        Dimensions=[{"Name": "FunctionName", "Value": function}],
        Period=3600 * 24,
        Statistics=["Minimum", "Maximum", "Average"],
        ExtendedStatistics=["p50", "p99"],
        **window(),
    )["Datapoints"]
    assert duration["Unit"] == "Milliseconds"
    assert 0 < duration["Minimum"] <= duration["ExtendedStatistics"]["p50"]
    assert duration["ExtendedStatistics"]["p50"] <= duration["ExtendedStatistics"]["p99"]
    assert duration["ExtendedStatistics"]["p99"] <= duration["Maximum"]

    found = scrape(server)
    labels = frozenset(
        {("function_name", function), ("resource", function), ("executed_version", "$LATEST")}
    )
    assert found[("aws_lambda_invocations_total", labels)] == 5
    assert found[("aws_lambda_errors_total", labels)] == 2
    assert found[("aws_lambda_duration_milliseconds_count", labels)] == 5
    assert found[("aws_lambda_duration_milliseconds_bucket", labels | {("le", "+Inf")})] == 5
    assert found[("lamina_warm_environments", frozenset({("function_name", function)}))] >= 1


def test_aliases_and_versions_have_their_own_series(
    server: LaminaServer, lambda_client: Any, cloudwatch: Any, function: str
) -> None:
    version = lambda_client.publish_version(FunctionName=function)["Version"]
    lambda_client.create_alias(FunctionName=function, Name="live", FunctionVersion=version)
    for _ in range(2):
        call(lambda_client, function, {}, Qualifier="live")
    call(lambda_client, function, {}, Qualifier=version)
    call(lambda_client, function, {})

    assert statistic(cloudwatch, "Invocations", {"FunctionName": function}) == 4
    alias = {"FunctionName": function, "Resource": f"{function}:live"}
    assert statistic(cloudwatch, "Invocations", alias) == 2
    assert statistic(cloudwatch, "Invocations", {**alias, "ExecutedVersion": version}) == 2
    by_version = {"FunctionName": function, "Resource": f"{function}:{version}"}
    assert statistic(cloudwatch, "Invocations", by_version) == 1

    found = scrape(server)
    live = frozenset(
        {
            ("function_name", function),
            ("resource", f"{function}:live"),
            ("executed_version", version),
        }
    )
    assert found[("aws_lambda_invocations_total", live)] == 2


def test_throttles_with_zero_reserved_concurrency(
    server: LaminaServer, lambda_client: Any, cloudwatch: Any, function: str
) -> None:
    lambda_client.put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=0)
    # One attempt per call: botocore would otherwise retry a 429, and each try is a throttle.
    once = boto3.client(
        "lambda",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )
    for _ in range(3):
        with pytest.raises(ClientError) as refused:
            call(once, function, {})
        assert refused.value.response["Error"]["Code"] == "TooManyRequestsException"
    once.close()

    assert statistic(cloudwatch, "Throttles", {"FunctionName": function}) == 3
    # Throttled requests are not invocations.
    assert statistic(cloudwatch, "Invocations", {"FunctionName": function}) is None
    labels = frozenset(
        {("function_name", function), ("resource", function), ("executed_version", "$LATEST")}
    )
    assert scrape(server)[("aws_lambda_throttles_total", labels)] == 3


def test_a_function_that_cannot_initialise_counts_as_an_error(
    lambda_client: Any, cloudwatch: Any, create_function: Callable[..., dict[str, Any]]
) -> None:
    broken = create_function(Code={"ZipFile": make_zip({"app.py": "import not_a_module\n"})})
    name = broken["FunctionName"]
    assert call(lambda_client, name, {})[0]["FunctionError"] == "Unhandled"
    assert statistic(cloudwatch, "Invocations", {"FunctionName": name}) == 1
    assert statistic(cloudwatch, "Errors", {"FunctionName": name}) == 1


class Barrier:
    """An HTTP barrier: each GET waits until `parties` requests have arrived."""

    def __init__(self, parties: int, host: netns.Host) -> None:
        barrier = threading.Barrier(parties, timeout=30)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                barrier.wait()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        # On another machine: functions do not reach the host's own addresses.
        self._server = http_server_in(host, Handler)
        self.url = f"http://{host.address}:{self._server.server_address[1]}/"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def remote() -> Iterator[netns.Host]:
    with elsewhere() as host:
        yield host


def test_concurrent_executions_is_the_peak(
    lambda_client: Any, cloudwatch: Any, function: str, remote: netns.Host
) -> None:
    barrier = Barrier(3, remote)
    errors: list[BaseException] = []

    def arrive() -> None:
        try:
            call(lambda_client, function, {"barrier": barrier.url})
        except BaseException as error:
            errors.append(error)

    try:
        threads = [threading.Thread(target=arrive) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        barrier.close()
    assert not errors
    # All three were in flight together (none could finish before the others arrived).
    assert statistic(cloudwatch, "ConcurrentExecutions", {"FunctionName": function}, "Maximum") == 3
    assert (statistic(cloudwatch, "ConcurrentExecutions", {}, "Maximum") or 0) >= 3


def test_provisioned_concurrency_invocations_spillover_and_utilization(
    server: LaminaServer, lambda_client: Any, cloudwatch: Any, function: str, remote: netns.Host
) -> None:
    version = lambda_client.publish_version(FunctionName=function)["Version"]
    lambda_client.put_provisioned_concurrency_config(
        FunctionName=function, Qualifier=version, ProvisionedConcurrentExecutions=1
    )
    try:
        wait_until(
            lambda: (
                lambda_client.get_provisioned_concurrency_config(
                    FunctionName=function, Qualifier=version
                )["Status"]
                == "READY"
            ),
            timeout=60,
            message="provisioned concurrency never became READY",
        )
        barrier = Barrier(2, remote)
        threads = [
            threading.Thread(
                target=call,
                args=(lambda_client, function, {"barrier": barrier.url}),
                kwargs={"Qualifier": version},
            )
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        barrier.close()
    finally:
        lambda_client.delete_provisioned_concurrency_config(
            FunctionName=function, Qualifier=version
        )
    # Both were in flight together: one on the provisioned environment, one spilled over.
    resource = {"FunctionName": function, "Resource": f"{function}:{version}"}
    assert statistic(cloudwatch, "Invocations", resource) == 2
    assert statistic(cloudwatch, "ProvisionedConcurrencyInvocations", resource) == 1
    assert statistic(cloudwatch, "ProvisionedConcurrencySpilloverInvocations", resource) == 1
    peak = statistic(cloudwatch, "ProvisionedConcurrentExecutions", resource, "Maximum")
    assert peak == 1
    use = statistic(cloudwatch, "ProvisionedConcurrencyUtilization", resource, "Maximum")
    assert use == 1.0
    labels = frozenset(
        {
            ("function_name", function),
            ("resource", f"{function}:{version}"),
            ("executed_version", version),
        }
    )
    found = scrape(server)
    assert found[("aws_lambda_provisioned_concurrency_invocations_total", labels)] == 1
    assert found[("aws_lambda_provisioned_concurrency_spillover_invocations_total", labels)] == 1


def test_asynchronous_invocations_and_their_metrics(
    server: LaminaServer, lambda_client: Any, cloudwatch: Any, function: str
) -> None:
    for _ in range(2):
        response = lambda_client.invoke(
            FunctionName=function, InvocationType="Event", Payload=b"{}"
        )
        assert response["StatusCode"] == 202
    wait_until(
        lambda: statistic(cloudwatch, "Invocations", {"FunctionName": function}) == 2,
        timeout=60,
        interval=0.2,
        message="the events did not run",
    )
    assert statistic(cloudwatch, "AsyncEventsReceived", {"FunctionName": function}) == 2
    age = statistic(cloudwatch, "AsyncEventAge", {"FunctionName": function}, "SampleCount")
    assert age == 2
    fn = frozenset({("function_name", function)})
    found = scrape(server)
    assert found[("aws_lambda_async_events_received_total", fn)] == 2
    assert found[("aws_lambda_async_event_age_milliseconds_count", fn)] == 2


def test_get_metric_data(lambda_client: Any, cloudwatch: Any, function: str) -> None:
    call(lambda_client, function, {})
    call(lambda_client, function, {"fail": True})

    def query(query_id: str, metric: str, stat: str) -> dict[str, Any]:
        return {
            "Id": query_id,
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/Lambda",
                    "MetricName": metric,
                    "Dimensions": [{"Name": "FunctionName", "Value": function}],
                },
                "Period": 3600,
                "Stat": stat,
            },
        }

    results = cloudwatch.get_metric_data(
        MetricDataQueries=[
            query("calls", "Invocations", "Sum"),
            query("failures", "Errors", "Sum"),
            query("p99", "Duration", "p99"),
        ],
        **window(),
    )["MetricDataResults"]
    by_id = {result["Id"]: result for result in results}
    assert sum(by_id["calls"]["Values"]) == 2
    assert sum(by_id["failures"]["Values"]) == 1
    assert by_id["calls"]["Label"] == "Invocations"
    assert by_id["calls"]["StatusCode"] == "Complete"
    assert len(by_id["p99"]["Values"]) == len(by_id["p99"]["Timestamps"]) >= 1


def test_cloudwatch_errors_carry_the_query_error_code(cloudwatch: Any) -> None:
    now = datetime.now(UTC)
    with pytest.raises(ClientError) as raised:
        cloudwatch.get_metric_statistics(
            Namespace="AWS/Lambda",
            MetricName="Invocations",
            StartTime=now - timedelta(days=2),
            EndTime=now,
            Period=60,
            Statistics=["Sum"],
        )
    error = raised.value.response["Error"]
    assert error["Code"] == "InvalidParameterCombination"
    assert "which exceeds the limit of 1440" in error["Message"]
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(cloudwatch.exceptions.InvalidParameterValueException):
        cloudwatch.get_metric_statistics(
            Namespace="AWS/Lambda",
            MetricName="Invocations",
            StartTime=now - timedelta(hours=1),
            EndTime=now,
            Period=90,
            Statistics=["Sum"],
        )


def test_list_metrics(lambda_client: Any, cloudwatch: Any, function: str) -> None:
    call(lambda_client, function, {})
    metrics = cloudwatch.list_metrics(
        Namespace="AWS/Lambda", Dimensions=[{"Name": "FunctionName", "Value": function}]
    )["Metrics"]
    names = {metric["MetricName"] for metric in metrics}
    assert {"Invocations", "Errors", "Duration", "ConcurrentExecutions"} <= names


def test_aws_cli_get_metric_statistics(
    server: LaminaServer, lambda_client: Any, function: str, tmp_path: Path
) -> None:
    for _ in range(2):
        call(lambda_client, function, {})
    now = datetime.now(UTC)
    result = run_aws(
        server.endpoint,
        tmp_path,
        "cloudwatch",
        "get-metric-statistics",
        "--namespace",
        "AWS/Lambda",
        "--metric-name",
        "Invocations",
        "--dimensions",
        f"Name=FunctionName,Value={function}",
        "--start-time",
        (now - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "--end-time",
        (now + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "--period",
        "3600",
        "--statistics",
        "Sum",
        "SampleCount",
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["Label"] == "Invocations"
    assert sum(point["Sum"] for point in document["Datapoints"]) == 2
    assert {point["Unit"] for point in document["Datapoints"]} == {"Count"}


def client_speaking(protocol: str, server: LaminaServer) -> Any:
    """A CloudWatch client whose model offers only `protocol`, as an older or newer SDK's."""
    model = botocore.loaders.Loader().load_service_model("cloudwatch", "service-2")
    model["metadata"] = {**model["metadata"], "protocol": protocol, "protocols": [protocol]}
    root = Path(server.data_dir).parent / f"model-{protocol}"
    target = root / "cloudwatch" / model["metadata"]["apiVersion"]
    target.mkdir(parents=True, exist_ok=True)
    (target / "service-2.json").write_text(json.dumps(model))
    session = botocore.session.get_session()
    session.get_component("data_loader").search_paths.insert(0, str(root))
    client = boto3.Session(botocore_session=session).client(
        "cloudwatch",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    assert client.meta.service_model.resolved_protocol == protocol
    return client


@pytest.mark.parametrize("protocol", ["query", "smithy-rpc-v2-cbor", "json"])
def test_every_protocol_in_the_model(
    server: LaminaServer, lambda_client: Any, function: str, protocol: str
) -> None:
    call(lambda_client, function, {})
    call(lambda_client, function, {"fail": True})
    client = client_speaking(protocol, server)
    try:
        by_function = {"FunctionName": function}
        assert statistic(client, "Invocations", by_function) == 2
        [point] = client.get_metric_statistics(
            Namespace="AWS/Lambda",
            MetricName="Duration",
            Dimensions=[{"Name": "FunctionName", "Value": function}],
            Period=86400,
            Statistics=["SampleCount", "Maximum"],
            ExtendedStatistics=["p100"],
            **window(),
        )["Datapoints"]
        assert point["SampleCount"] == 2
        assert point["ExtendedStatistics"]["p100"] == point["Maximum"]
        assert isinstance(point["Timestamp"], datetime)
        data = client.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": "errors",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": "AWS/Lambda",
                            "MetricName": "Errors",
                            "Dimensions": [{"Name": "FunctionName", "Value": function}],
                        },
                        "Period": 3600,
                        "Stat": "Sum",
                    },
                }
            ],
            **window(),
        )["MetricDataResults"]
        assert sum(data[0]["Values"]) == 1
        assert len(client.list_metrics(Namespace="AWS/Lambda", MetricName="Errors")["Metrics"]) >= 1
        with pytest.raises(client.exceptions.InvalidParameterValueException) as raised:
            client.get_metric_statistics(
                Namespace="AWS/Lambda",
                MetricName="Invocations",
                Period=30,
                Statistics=["Sum"],
                **window(),
            )
        assert raised.value.response["Error"]["Code"] == "InvalidParameterValue"
    finally:
        client.close()


def test_internal_json_metrics_still_answer(server: LaminaServer) -> None:
    with urllib.request.urlopen(f"{server.endpoint}/_lamina/metrics", timeout=5) as response:
        assert isinstance(json.loads(response.read()), dict)
