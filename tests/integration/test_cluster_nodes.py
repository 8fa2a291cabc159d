"""Three Lamina nodes on one PostgreSQL database (`lamina serve --store postgresql://...`).

Real server processes, each with its own data directory and port, share a fresh database
(dropped after the module). What one node is told, every node knows: a function created
through one is invoked through another at once; logs, metrics, audit records and the
asynchronous queue are the cluster's, read through any node or `lamina` command; each
asynchronous event runs once; a schedule fires once per tick whichever node's scheduler
claims it; an SQS event source mapping is polled by exactly one node at a time, and by
another when that node is killed with -9.

Functions report every invocation to a sink in the test (an HTTP server on loopback). The
nodes run schedules 100 times faster than real time and hold mapping leases for 2 s, so
everything happens in seconds; no check times the nodes, waits are generous.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE, invoke
from tests.support.lamina_cli import run_lamina
from tests.support.peers import MotoServer
from tests.support.postgres import fresh_database
from tests.support.reachable import Recorder, elsewhere
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

NODES = 3
LEASE_S = 2
ACCOUNT = "000000000000"

HANDLER = """
import json, os, urllib.request

def handler(event, context):
    doc = {"function": context.function_name, "request": context.aws_request_id,
           "event": event, "version": os.environ.get("CODE", "1")}
    request = urllib.request.Request(os.environ["SINK"], data=json.dumps(doc).encode(),
                                     method="POST")
    urllib.request.urlopen(request, timeout=10).read()
    print("cluster-line", json.dumps(event, sort_keys=True))
    return {"version": doc["version"], "event": event}
"""


class Sink(Recorder):
    """What functions post: one document per invocation."""

    def of(self, function: str) -> list[dict[str, Any]]:
        with self.lock:
            return [post for post in self.posts if post["function"] == function]


@pytest.fixture(scope="module")
def store_url() -> Iterator[str]:
    with fresh_database("lamina_cluster") as url:
        yield url


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    with elsewhere() as host:
        instance = Sink(host)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def nodes(
    store_url: str, moto: MotoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[LaminaServer]]:
    root = tmp_path_factory.mktemp("cluster")
    env = {
        # One key for the cluster's sealed environment variables, as an operator would give.
        "LAMINA_MASTER_KEY_FILE": str(root / "master-key"),
        **moto.env,
        "LAMINA_SCHEDULE_TIME_SCALE": "0.01",
        # One schedule clock for the cluster: every node counts ticks from the same origin.
        "LAMINA_SCHEDULE_TIME_ORIGIN": str(time.time()),
        "LAMINA_MAPPING_LEASE_SECONDS": str(LEASE_S),
        "LAMINA_POLLER_RECONCILE_SECONDS": "0.2",
    }
    servers = [LaminaServer(root / f"node{index}", env=env) for index in range(NODES)]
    try:
        for server in servers:
            server.start("--store", store_url, timeout=30)
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def clients(nodes: list[LaminaServer]) -> Iterator[list[Any]]:
    made = [node.client("lambda") for node in nodes]
    yield made
    for client in made:
        client.close()


@pytest.fixture
def function(clients: list[Any], sink: Sink) -> Callable[..., str]:
    """Create a reporting function through the first node; returns its name."""

    def make(**variables: str) -> str:
        name = f"cluster-{uuid.uuid4().hex[:8]}"
        clients[0].create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": make_zip({"app.py": HANDLER})},
            Environment={"Variables": {"SINK": sink.url, **variables}},
        )
        clients[0].get_waiter("function_active_v2").wait(
            FunctionName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150}
        )
        return name

    return make


def lamina(*args: str) -> Any:
    result = run_lamina(*args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if "--json" in args else result.stdout


def drained(store_url: str, name: str) -> bool:
    """`lamina events --store` shows none of the function's events left (all acknowledged)."""
    shown = lamina("events", name, "--json", "--store", store_url)
    return not any(shown["Functions"].get(name, {}).values())


# ------------------------------------------------------------------ one set of functions


def test_created_on_one_node_invoked_on_the_others_at_once(
    clients: list[Any], function: Callable[..., str]
) -> None:
    name = function()
    # No wait: the other nodes read what the first one wrote.
    for index, client in enumerate(clients):
        assert invoke(client, name, {"node": index}) == {"version": "1", "event": {"node": index}}
    listed = [
        {item["FunctionName"] for item in client.list_functions()["Functions"]}
        for client in clients
    ]
    assert all(name in names for names in listed)


def test_a_change_on_one_node_reaches_the_others(
    clients: list[Any], function: Callable[..., str], sink: Sink
) -> None:
    name = function()
    assert invoke(clients[1], name)["version"] == "1"  # node 1 has it warm and cached
    clients[2].update_function_configuration(
        FunctionName=name, Environment={"Variables": {"SINK": sink.url, "CODE": "2"}}
    )
    clients[2].get_waiter("function_updated_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150}
    )
    # Other nodes learn of a change within about a second (PostgreSQL's NOTIFY).
    wait_until(lambda: invoke(clients[1], name)["version"] == "2", timeout=15, interval=0.2)
    wait_until(lambda: invoke(clients[0], name)["version"] == "2", timeout=15, interval=0.2)
    clients[0].delete_function(FunctionName=name)
    for client in clients[1:]:
        wait_until(
            lambda client=client: (
                name not in {item["FunctionName"] for item in client.list_functions()["Functions"]}
            ),
            timeout=15,
        )


# ------------------------------------------------------------------ observability


def test_logs_metrics_and_audit_are_the_clusters(
    nodes: list[LaminaServer], store_url: str, clients: list[Any], function: Callable[..., str]
) -> None:
    name = function()
    marker = uuid.uuid4().hex
    for index, client in enumerate(clients):
        invoke(client, name, {"marker": marker, "node": index})
    # CloudWatch Logs through the last node: every node's lines.
    logs = nodes[-1].client("logs")
    try:

        def lines() -> set[str]:
            events = logs.filter_log_events(
                logGroupName=f"/aws/lambda/{name}", filterPattern=f'"{marker}"'
            )["events"]
            return {event["message"] for event in events}

        found = wait_until(lambda: len(lines()) == NODES and lines(), timeout=30)
        assert {json.loads(line.split("cluster-line ", 1)[1])["node"] for line in found} == {
            0,
            1,
            2,
        }
    finally:
        logs.close()
    # `lamina logs` against another node prints them too.
    printed = lamina("logs", name, "--endpoint", nodes[1].endpoint, "--color", "never")
    assert printed.count(marker) == NODES
    # Metrics: each node flushes its counts to PostgreSQL; any node's CloudWatch sums them.
    cloudwatch = nodes[0].client("cloudwatch")
    try:

        def invocations() -> float:
            now = time.time()
            points = cloudwatch.get_metric_statistics(
                Namespace="AWS/Lambda",
                MetricName="Invocations",
                Dimensions=[{"Name": "FunctionName", "Value": name}],
                StartTime=now - 1800,
                EndTime=now + 120,
                Period=3600,
                Statistics=["Sum"],
            )["Datapoints"]
            return float(sum(point["Sum"] for point in points))

        wait_until(lambda: invocations() == NODES, timeout=30, interval=0.5)
    finally:
        cloudwatch.close()
    # The audit log: every node's calls, read straight from the store.
    audited = lamina("audit", "--store", store_url, "--function", name, "--json")["Events"]
    assert "CreateFunction" in {entry["Operation"] for entry in audited}


# ------------------------------------------------------------------ asynchronous work


def test_each_async_event_runs_once_whichever_node_accepted_it(
    store_url: str, clients: list[Any], function: Callable[..., str], sink: Sink
) -> None:
    name = function()
    accepted = set()
    for n in range(30):
        response = clients[n % NODES].invoke(
            FunctionName=name, InvocationType="Event", Payload=json.dumps({"n": n}).encode()
        )
        assert response["StatusCode"] == 202
        accepted.add(response["ResponseMetadata"]["RequestId"])
    wait_until(
        lambda: {post["request"] for post in sink.of(name)} >= accepted,
        timeout=60,
        message=lambda: (
            f"{len(sink.of(name))} ran; the queue: "
            + json.dumps(lamina("events", name, "--json", "--store", store_url))
        ),
    )
    # Every event acknowledged: none can run again, so the count is final.
    wait_until(lambda: drained(store_url, name), timeout=30, interval=0.3)
    runs = [post["request"] for post in sink.of(name)]
    assert sorted(runs) == sorted(accepted)


def test_a_schedule_fires_once_per_tick_across_the_cluster(
    nodes: list[LaminaServer],
    store_url: str,
    clients: list[Any],
    function: Callable[..., str],
    sink: Sink,
) -> None:
    name = function()
    rule = f"tick-{uuid.uuid4().hex[:8]}"
    clients[0].add_permission(
        FunctionName=name,
        StatementId="events",
        Action="lambda:InvokeFunction",
        Principal="events.amazonaws.com",
        SourceArn=f"arn:aws:events:us-east-1:{ACCOUNT}:rule/{rule}",
    )
    events = nodes[1].client("events")
    try:
        # A minute lasts 0.6 s: a tick every 0.6 s, each claimed by one of three schedulers.
        events.put_rule(Name=rule, ScheduleExpression="rate(1 minute)")
        events.put_targets(
            Rule=rule,
            Targets=[{"Id": "f", "Arn": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}"}],
        )
        wait_until(lambda: len(sink.of(name)) >= 10, timeout=60)
        events.remove_targets(Rule=rule, Ids=["f"])
        events.delete_rule(Name=rule)
    finally:
        events.close()
    wait_until(lambda: drained(store_url, name), timeout=30, interval=0.3)
    scheduled = [post["event"] for post in sink.of(name)]
    assert all(event["detail-type"] == "Scheduled Event" for event in scheduled)
    ticks = [event["time"] for event in scheduled]
    assert len(set(ticks)) == len(ticks), f"a tick fired twice: {sorted(ticks)}"
    assert len({event["id"] for event in scheduled}) == len(scheduled)


# ------------------------------------------------------------------ event source mappings


def pollers(nodes: list[LaminaServer], name: str) -> list[int]:
    """The indexes of the live nodes running a poller for `name`'s mapping."""
    polling = []
    for index, node in enumerate(nodes):
        if node.process is None or node.process.poll() is not None:
            continue
        url = f"{node.endpoint}/_lamina/mappings?function={name}"
        with urllib.request.urlopen(url, timeout=5) as response:
            rows = json.loads(response.read())["Mappings"]
        if any(row["Poller"] is not None for row in rows):
            polling.append(index)
    return polling


def one_poller(nodes: list[LaminaServer], name: str) -> int:
    """The node polling `name`'s mapping, once exactly one does; then it stays the only one
    for a few more reconciles."""
    owner = wait_until(
        lambda: (found := pollers(nodes, name)) and len(found) == 1 and found,
        timeout=10 * LEASE_S + 20,
        interval=0.2,
        message=lambda: f"not exactly one poller: {pollers(nodes, name)}",
    )[0]
    for _ in range(10):
        time.sleep(0.2)
        assert pollers(nodes, name) == [owner]
    return int(owner)


def test_a_mapping_is_polled_by_one_node_and_moves_when_it_dies(
    nodes: list[LaminaServer],
    clients: list[Any],
    moto: MotoServer,
    function: Callable[..., str],
    sink: Sink,
) -> None:
    """Last in the module: it kills a node."""
    name = function()
    sqs = moto.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]

    def send(prefix: str) -> set[str]:
        return {
            sqs.send_message(QueueUrl=queue_url, MessageBody=f"{prefix}{n}")["MessageId"]
            for n in range(10)
        }

    def delivered() -> set[str]:
        return {
            record["messageId"] for post in sink.of(name) for record in post["event"]["Records"]
        }

    mapping = clients[1].create_event_source_mapping(
        EventSourceArn=arn, FunctionName=name, BatchSize=5
    )["UUID"]
    try:
        owner = one_poller(nodes, name)
        before = send("before")
        wait_until(lambda: delivered() >= before, timeout=60)
        nodes[owner].kill()
        # Its lease lapses (2 s unrenewed); one of the others takes the mapping.
        survivor = one_poller(nodes, name)
        assert survivor != owner
        after = send("after")
        wait_until(lambda: delivered() >= after, timeout=60)
    finally:
        live = next(i for i, node in enumerate(nodes) if node.process.poll() is None)  # type: ignore[union-attr]
        clients[live].delete_event_source_mapping(UUID=mapping)
        sqs.close()
