"""Chaos: three nodes, each in its own network namespace, under load while the test kills -9
nodes, cuts one node's network for a while and restarts Redis; afterwards the issue's
invariants must hold, from the clients' record and the probe's ledger alone.

- every asynchronous event a node accepted (202) ran to its end at least once;
- an event ran more than once only because a fault hit it: of its runs, at most one was not
  in flight on a node when that node was killed or cut; so the duplicates are no more than
  the events in flight at the faults;
- the function with a reserved concurrency of 2 never ran more than 2 copies at once;
- every synchronous call answered 200 ran (the ledger has its run, ended);
- then, without any help, the cluster is healthy: every node answers and runs a fresh call,
  and the queue drains to nothing.

Calls that fail while nodes die (connection refused or reset, timeouts, 5xx, throttles) are
expected and only counted. The faults come at a paced schedule; every check after them is
a bounded wait for a condition. The random choices come from one seed, printed on failure.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.support import cluster as cluster_support
from tests.support.archives import make_zip
from tests.support.chaos import Fault, Load, hit_by, most_at_once
from tests.support.cluster import Cluster
from tests.support.lambda_api import ROLE, invoke
from tests.support.lamina_cli import run_lamina
from tests.support.ledger import PROBE_SOURCE, Ledger, Run
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not cluster_support.available(),
        reason="needs root, iproute2 (network namespaces) and redis-server",
    ),
]

NODES = 3
RESERVED = 2
EVENT_SLEEP_S = 0.2
# Longer than a node's pause after a Redis error (0.5 s): calls admitted before Redis restarts
# are still running when the nodes admit again.
RESERVED_SLEEP_S = 1.5
# How long a killed node stays dead before it is started again.
DOWN_S = 1.5
CUT_S = 4.0
# Between one fault's end and the next fault.
PACE_S = 4.0
# The async event lease the nodes use (cluster.FAST_FAILURE_ENV); a cut node may still start
# what it had claimed for about this long once it is back.
LEASE_S = float(cluster_support.FAST_FAILURE_ENV["LAMINA_ASYNC_LEASE_SECONDS"])
# From a run's end to its event's acknowledgement.
ACK_S = 1.0

NODE_ENV = {
    # A few workers per node keep three nodes and their environments within two cores.
    "LAMINA_ASYNC_WORKERS": "4",
    # Retries and throttle backoff in hundredths of AWS's timing.
    "LAMINA_ASYNC_RETRY_SCALE": "0.01",
}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path / "cluster", NODES, env=NODE_ENV) as running:
        yield running


@pytest.fixture
def ledger(cluster: Cluster, tmp_path: Path) -> Iterator[Ledger]:
    """The probes' ledger; left in ledger.jsonl (beside the nodes' logs) after the test."""
    instance = Ledger(cluster.network.gateway).start()
    yield instance
    instance.close()
    instance.dump(tmp_path / "ledger.jsonl")


def create_probe(client: Any, ledger: Ledger, timeout_s: int) -> str:
    name = f"chaos-{uuid.uuid4().hex[:8]}"
    client.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="probe.handler",
        Code={"ZipFile": make_zip({"probe.py": PROBE_SOURCE})},
        Timeout=timeout_s,
        Environment={"Variables": {"LEDGER": ledger.url}},
    )
    client.get_waiter("function_active_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150}
    )
    return name


def runs_a_call(cluster: Cluster, index: int, function: str) -> bool:
    client = cluster.client(index)
    try:
        return bool(invoke(client, function, {"n": -1}))
    finally:
        client.close()


def sees_every_node(cluster: Cluster, index: int) -> bool:
    """Whether the node's view of the cluster is every node once, none suspected: the dead
    processes' registrations expired, the restarted ones joined."""
    rows = cluster.status(index)["nodes"]
    addresses = sorted(row["address"] for row in rows)
    expected = sorted(node.endpoint for node in cluster.nodes)
    return addresses == expected and not any(row["suspect"] for row in rows)


def at_the_limit(ledger: Ledger, function: str) -> bool:
    """Whether the function runs as many copies as its reservation right now."""
    now = time.time()
    running = [
        run
        for run in ledger.runs(function)
        if run.end is None and now - run.start < RESERVED_SLEEP_S / 2
    ]
    return len(running) >= RESERVED


def queue_drained(store_url: str, function: str) -> bool:
    """`lamina events --store` shows none of the function's events left."""
    result = run_lamina("events", function, "--json", "--store", store_url)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    return not any(shown["Functions"].get(function, {}).values())


def inject_faults(
    cluster: Cluster, chooser: random.Random, at_the_limit: Callable[[], bool]
) -> list[Fault]:
    """Restart Redis while the limited function runs at its limit (the leases it holds are
    lost with Redis's keys: the hardest moment for the limit), then kill a random node,
    cut one off the network for a while, and kill twice more."""
    faults: list[Fault] = []

    def kill() -> None:
        node = chooser.randrange(NODES)
        moment = time.time()
        cluster.kill(node)
        faults.append(Fault("kill", node, moment, moment))
        time.sleep(DOWN_S)  # pacing: dead long enough for the others to notice
        cluster.restart(node)

    def restart_redis() -> None:
        wait_until(at_the_limit, timeout=20, interval=0.01, message="never at the limit")
        moment = time.time()
        cluster.restart_redis()
        faults.append(Fault("redis", None, moment, time.time()))

    def cut() -> None:
        node = chooser.randrange(NODES)
        moment = time.time()
        cluster.cut(node)
        time.sleep(CUT_S)  # pacing: the length of the partition
        cluster.heal(node)
        faults.append(Fault("cut", node, moment, time.time()))

    for step in (restart_redis, kill, cut, kill, kill):
        time.sleep(PACE_S)  # pacing: load runs undisturbed between faults
        step()
    time.sleep(PACE_S)
    return faults


def test_the_cluster_survives_kills_a_partition_and_a_redis_restart(
    cluster: Cluster, ledger: Ledger, tmp_path: Path
) -> None:
    began = time.monotonic()
    seed = random.randrange(1 << 30)
    setup = cluster.client(0)
    events_function = create_probe(setup, ledger, timeout_s=30)
    limited = create_probe(setup, ledger, timeout_s=10)
    setup.put_function_concurrency(FunctionName=limited, ReservedConcurrentExecutions=RESERVED)
    setup.close()
    # Every node knows both functions and has one warm environment of each.
    for index in range(NODES):
        client = cluster.client(index)
        invoke(client, events_function, {"n": 0})
        invoke(client, limited, {"n": 0})
        client.close()
    warm_runs = {run.run for run in ledger.runs()}

    load = Load(lambda: [cluster.client(i, read_timeout=15) for i in range(NODES)], seed)
    for _ in range(2):
        load.send_events(events_function, EVENT_SLEEP_S, pause_s=0.1)
    for _ in range(2 * RESERVED):  # more callers than the reservation admits
        load.call(limited, RESERVED_SLEEP_S)
    load.call(events_function, EVENT_SLEEP_S)
    try:
        faults = inject_faults(cluster, random.Random(seed), lambda: at_the_limit(ledger, limited))
    finally:
        load.stop()
    outcomes = load.outcomes
    context = (
        f"seed {seed}; faults {faults}; refusals {dict(outcomes.refusals)}; "
        f"nodes' logs and the ledger (after teardown) in {tmp_path}"
    )

    # Healthy without help: every node answers, and runs a fresh call.
    for node in cluster.nodes:
        wait_until(node.answers, timeout=30, ignoring=(OSError,))
        wait_until(
            partial(runs_a_call, cluster, node.index, events_function),
            timeout=30,
            interval=0.5,
            ignoring=(ClientError, BotoCoreError, AssertionError),
            message=lambda: f"a node does not run a call: {context}\n{cluster.logs()}",
        )
        wait_until(
            partial(sees_every_node, cluster, node.index),
            timeout=30,
            interval=0.2,
            ignoring=(OSError,),
            message=lambda: f"a node does not see the cluster whole: {cluster.status(0)}",
        )

    def runs(function: str) -> list[Run]:
        return [run for run in ledger.runs(function) if run.run not in warm_runs]

    def ended() -> set[str]:
        return {run.request for run in runs(events_function) if run.end is not None}

    # Every accepted event ran to its end at least once.
    wait_until(
        lambda: outcomes.accepted <= ended(),
        timeout=60,
        interval=0.5,
        message=lambda: (
            f"{len(outcomes.accepted - ended())} of {len(outcomes.accepted)} accepted events "
            f"never ran: {context}\n{cluster.logs()}"
        ),
    )
    wait_until(
        lambda: queue_drained(cluster.store_url, events_function),
        timeout=30,
        interval=0.5,
        message=lambda: f"the queue did not drain: {context}",
    )

    # Every invariant is checked, and all that broke are reported together.
    broken = explained_duplicates(faults, runs(events_function), outcomes.accepted)
    limited_runs = runs(limited)
    most, when = most_at_once(limited_runs, RESERVED_SLEEP_S)
    if most > RESERVED:
        overlapping = [run for run in limited_runs if run.running_at(when)]
        broken.append(
            f"the reservation of {RESERVED} was exceeded: {most} copies ran at once at "
            f"{when:.3f}: {overlapping}"
        )
    if not outcomes.refusals["TooManyRequestsException"]:
        broken.append("no call was ever throttled: the reservation was never put to the test")
    if not outcomes.answered:
        broken.append("no synchronous call was answered")
    wrong = {reason: n for reason, n in outcomes.refusals.items() if reason.startswith("wrong")}
    if wrong:
        broken.append(f"calls answered 200 with something else than the function's answer: {wrong}")
    ran = {run.request for run in ledger.runs() if run.end is not None}
    if not outcomes.answered <= ran:
        broken.append(f"synchronous calls answered but never run: {outcomes.answered - ran}")
    summary = (
        f"{len(outcomes.accepted)} events accepted, {len(runs(events_function))} runs; "
        f"{len(outcomes.answered)} sync calls answered; {len(limited_runs)} runs of the "
        f"limited function, at most {most} at once; {time.monotonic() - began:.0f} s; {context}"
    )
    assert not broken, "\n".join(broken) + "\n" + summary
    print("chaos:", summary)


def explained_duplicates(faults: list[Fault], runs: list[Run], accepted: set[str]) -> list[str]:
    """What is wrong with the runs of accepted events: of an event's runs, at most one may
    have been left alone by the faults (the others were in flight on a node killed or cut),
    so that the duplicates are no more than the events in flight at the faults."""
    by_event: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        if run.request in accepted:
            by_event[run.request].append(run)

    def hit(run: Run) -> list[Fault]:
        return [fault for fault in faults if hit_by(run, fault, ACK_S, LEASE_S)]

    broken = []
    unexplained = {
        event: event_runs
        for event, event_runs in by_event.items()
        if sum(1 for run in event_runs if not hit(run)) > 1
    }
    if unexplained:
        broken.append(f"events run twice with no fault to explain it: {unexplained}")
    duplicates = sum(len(event_runs) - 1 for event_runs in by_event.values())
    in_flight = sum(
        len(
            {
                event
                for event, event_runs in by_event.items()
                if any(fault in hit(run) for run in event_runs)
            }
        )
        for fault in faults
    )
    if duplicates > in_flight:
        broken.append(
            f"{duplicates} duplicates, more than the {in_flight} events in flight at faults"
        )
    print(f"chaos: {duplicates} duplicates; {in_flight} events in flight at the faults")
    return broken
