"""Schedules across a restart: the rule survives, no tick fires twice, and the ticks missed
while the server was down fire once (the latest of them), not as a burst.

Schedule time runs 100 times faster than the wall clock (a minute lasts 0.6 s) from a fixed
origin shared by both server processes, so the test knows which schedule minutes passed
while no server ran. The assertions are about which ticks fired, read from the invocation
records the function's OnSuccess destination (SQS on a moto server) receives; a slower
machine only makes the downtime longer, never the assertions wrong.
"""

from __future__ import annotations

import calendar
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE
from tests.support.peers import MotoServer
from tests.support.queues import Queue
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

SCALE = 0.01
PERIOD = 60  # schedule seconds between the ticks of rate(1 minute)
DOWNTIME_S = 4.0  # real seconds: about 6.7 schedule minutes


class Ticks:
    """Every invocation record seen, as schedule tick -> the event ids fired for it."""

    def __init__(self, results: Queue) -> None:
        self._results = results
        self.by_time: dict[int, set[str]] = defaultdict(set)

    def collect_until(self, done: Callable[[], bool], timeout: float = 60.0) -> None:
        """Take records (waiting on the queue a second at a time) until `done()` holds."""

        def collected() -> bool:
            if not done():
                for message in self._results.receive(10, timeout=1.0):
                    event = json.loads(message["Body"])["requestPayload"]
                    tick = calendar.timegm(time.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ"))
                    self.by_time[tick].add(event["id"])
            return done()

        wait_until(
            collected,
            timeout=timeout,
            interval=0,
            message=lambda: f"not done with the ticks seen: {sorted(self.by_time)}",
        )

    def after(self, moment: float) -> list[int]:
        return sorted(tick for tick in self.by_time if tick > moment)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["stop", "kill"])
def test_a_schedule_survives_a_restart_and_fires_once_for_missed_ticks(
    moto: MotoServer, sqs: Any, tmp_path: Path, how: str
) -> None:
    origin = time.time()

    def schedule_time() -> float:
        return origin + (time.time() - origin) / SCALE

    env = {
        **moto.env,
        "LAMINA_SCHEDULE_TIME_SCALE": str(SCALE),
        "LAMINA_SCHEDULE_TIME_ORIGIN": str(origin),
    }
    data_dir = tmp_path / "data"
    results = Queue(sqs)
    ticks = Ticks(results)
    function, rule = f"fn-{uuid.uuid4().hex[:8]}", f"rule-{uuid.uuid4().hex[:8]}"

    server = LaminaServer(data_dir, env=env).start()
    try:
        lambda_, events = server.client("lambda"), server.client("events")
        arn = lambda_.create_function(
            FunctionName=function,
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": make_zip()},
        )["FunctionArn"]
        lambda_.put_function_event_invoke_config(
            FunctionName=function, DestinationConfig={"OnSuccess": {"Destination": results.arn}}
        )
        rule_arn = events.put_rule(Name=rule, ScheduleExpression="rate(1 minute)")["RuleArn"]
        lambda_.add_permission(
            FunctionName=function,
            StatementId="events",
            Action="lambda:InvokeFunction",
            Principal="events.amazonaws.com",
            SourceArn=rule_arn,
        )
        events.put_targets(Rule=rule, Targets=[{"Id": "fn", "Arn": arn}])
        ticks.collect_until(lambda: len(ticks.by_time) >= 3)
        assert len(ticks.by_time) >= 3
    finally:
        if how == "kill":
            server.kill()
        else:
            server.stop()
    down_from = schedule_time()
    time.sleep(DOWNTIME_S)
    down_until = schedule_time()
    assert down_until - down_from >= 5 * PERIOD

    restarted = LaminaServer(data_dir, env=env).start()
    try:
        events = restarted.client("events")
        assert events.describe_rule(Name=rule)["ScheduleExpression"] == "rate(1 minute)"
        assert events.list_targets_by_rule(Rule=rule)["Targets"] == [{"Id": "fn", "Arn": arn}]
        ticks.collect_until(lambda: len(ticks.after(down_from)) >= 3)
        events.remove_targets(Rule=rule, Ids=["fn"])
        events.delete_rule(Name=rule)
    finally:
        restarted.stop()

    # Never twice: each tick was fired by one claim, so it has one event id (a redelivery of
    # that event by the async queue, which is at-least-once, repeats the same id).
    doubled = {tick: ids for tick, ids in ticks.by_time.items() if len(ids) > 1}
    assert doubled == {}
    # It came back: the rule kept firing after the restart ...
    fired_after = ticks.after(down_from)
    assert len(fired_after) >= 3
    # ... and its first tick after the downtime is the latest one missed (or later): the
    # five or more ticks missed before it were not fired one by one.
    first = fired_after[0]
    assert first > down_until - PERIOD, (
        f"fired {[t - down_from for t in fired_after]} s after the server went down"
    )
    assert all(tick % PERIOD == 0 for tick in fired_after)
