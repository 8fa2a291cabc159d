"""PutEvents without a server: entry checks, matching against the rules of the right bus,
the payload each target gets, and compiling patterns once per rule change.

The rule store is the real SQLite one; target resolution is faked (the permission check
itself is covered over HTTP in tests/integration/test_eventbridge_events.py).
"""

from __future__ import annotations

import calendar
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from lamina.arns import Account
from lamina.errors import ValidationError
from lamina.metrics import MetricsRegistry
from lamina.model.rules import DEFAULT_BUS
from lamina.schedules import bus as bus_module
from lamina.schedules.bus import EventRouter, Plan, entry_size
from lamina.schedules.events import RuleContext, bus_event, transform
from lamina.schedules.rules import RuleService
from lamina.schedules.targets import Undeliverable
from lamina.store.sqlite import open_stores

ACCOUNT = Account("111111111111", "us-east-1")
FUNCTION_ARN = "arn:aws:lambda:us-east-1:111111111111:function:"
NOW = calendar.timegm((2024, 6, 11, 8, 33, 10)) + 0.5
DETAIL = {"command": "update-account", "payload": {"acc_id": "0a787ecb-4015", "sf_id": "baz"}}


class AllowAll:
    def resolve(self, target_arn: str, rule_arn: str) -> tuple[str, str | None]:
        name, _, qualifier = target_arn.split(":function:")[1].partition(":")
        return name, qualifier or None


class DenyAll:
    def resolve(self, target_arn: str, rule_arn: str) -> tuple[str, str | None]:
        raise Undeliverable(f"no policy lets {rule_arn} invoke {target_arn}")


class Harness:
    def __init__(self, data_dir: Path, resolver: Any = None) -> None:
        self.stores = open_stores(data_dir)
        self.metrics = MetricsRegistry()
        self.rules = RuleService(self.stores.rules, ACCOUNT, lambda: NOW, wall=lambda: NOW)
        self.router = EventRouter(
            rules=self.stores.rules,
            targets=resolver or AllowAll(),
            account=ACCOUNT,
            bus_name=self.rules.bus_name,
            bus_exists=self.rules.bus_exists,
            metrics=self.metrics,
            wall=lambda: NOW,
        )

    def rule(
        self, name: str, pattern: Any, *targets: dict[str, Any], bus: str | None = None
    ) -> None:
        self.rules.put_rule(name, event_pattern=orjson.dumps(pattern).decode(), bus=bus)
        targets = targets or ({"Id": "t", "Arn": FUNCTION_ARN + name},)
        self.rules.put_targets(name, list(targets), bus)

    def put(self, *entries: dict[str, Any]) -> Plan:
        """As the PutEvents handler does it, short of queueing the invocations."""
        plan = self.router.plan(list(entries))
        self.router.report(plan)
        return plan


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path / "data")


def entry(**overrides: Any) -> dict[str, Any]:
    return {
        "Source": "shop",
        "DetailType": "order placed",
        "Detail": orjson.dumps(DETAIL).decode(),
        **overrides,
    }


def payloads(plan: Plan) -> dict[str, Any]:
    return {event.function: orjson.loads(event.payload) for event in plan.invocations}


# --------------------------------------------------------------------------- entries


def test_each_entry_is_answered_on_its_own(harness: Harness) -> None:
    plan = harness.put(
        entry(),
        entry(Source=None),
        entry(DetailType=""),
        entry(Detail=None),
        entry(Detail='"a string"'),
        entry(Detail="[1, 2]"),
        entry(Detail="{not json"),
        entry(Detail=orjson.dumps(orjson.dumps(DETAIL).decode()).decode()),
        entry(DetailType="d" * 129),
        entry(),
    )
    missing = "Parameter {0} is not valid. Reason: {0} is a required argument."
    malformed = {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}
    assert plan.entries[1:8] == [
        {"ErrorCode": "InvalidArgument", "ErrorMessage": missing.format("Source")},
        {"ErrorCode": "InvalidArgument", "ErrorMessage": missing.format("DetailType")},
        {"ErrorCode": "InvalidArgument", "ErrorMessage": missing.format("Detail")},
        malformed,
        malformed,
        malformed,
        malformed,
    ]
    assert plan.entries[8]["ErrorCode"] == "InvalidArgument"
    assert set(plan.entries[0]) == {"EventId"} and set(plan.entries[9]) == {"EventId"}
    assert plan.entries[0]["EventId"] != plan.entries[9]["EventId"]
    assert plan.failed_count == 8


def test_entries_over_the_size_limit_fail_the_request(harness: Harness) -> None:
    limit = bus_module.MAX_REQUEST_BYTES
    # Counted as EventBridge documents it: 14 bytes for a Time, the UTF-8 of the rest.
    sized = entry(Time=NOW, Resources=["é"], Detail='{"k": ""}')
    assert entry_size(sized) == 14 + len("shop") + len("order placed") + 9 + 2
    fits = entry(Detail=orjson.dumps({"k": "x" * (limit - 16 - 10)}).decode())
    assert entry_size(fits) <= limit
    assert harness.put(fits).failed_count == 0
    with pytest.raises(ValidationError) as raised:
        harness.put(fits, entry())
    assert raised.value.message == "Total size of the entries in the request is over the limit."


# --------------------------------------------------------------------------- matching


def test_an_event_reaches_the_enabled_rules_of_its_bus_that_match(harness: Harness) -> None:
    harness.rules.create_bus("orders")
    harness.rule("on-default", {"source": ["shop"]})
    harness.rule("other-source", {"source": ["elsewhere"]})
    harness.rule("on-orders", {"detail": {"command": ["update-account"]}}, bus="orders")
    harness.rule("disabled", {"source": ["shop"]})
    harness.rules.set_state("disabled", "DISABLED")
    harness.rules.put_rule("no-targets", event_pattern='{"source": ["shop"]}')

    plan = harness.put(entry())
    assert sorted(payloads(plan)) == ["on-default"]
    event = payloads(plan)["on-default"]
    assert event == {
        "version": "0",
        "id": plan.entries[0]["EventId"],
        "detail-type": "order placed",
        "source": "shop",
        "account": "111111111111",
        "time": "2024-06-11T08:33:10Z",
        "region": "us-east-1",
        "resources": [],
        "detail": DETAIL,
    }
    assert list(event) == list(bus_event("x", ACCOUNT, "s", "d", {}, [], 0))

    by_arn = "arn:aws:events:us-east-1:111111111111:event-bus/orders"
    for name in ("orders", by_arn):
        plan = harness.put(entry(EventBusName=name, Resources=["arn:aws:s3:::b"], Time=0))
        (sent,) = payloads(plan).values()
        assert sorted(payloads(plan)) == ["on-orders"]
        assert (sent["resources"], sent["time"]) == (["arn:aws:s3:::b"], "1970-01-01T00:00:00Z")
    assert harness.metrics.snapshot()["MatchedEvents"]["orders/on-orders"]["Sum"] == 2


def test_an_event_for_a_bus_that_does_not_exist_is_accepted_and_dropped(
    harness: Harness,
) -> None:
    harness.rule("everything", {"source": ["shop"]})
    plan = harness.put(
        entry(EventBusName="nowhere"),
        entry(EventBusName="arn:aws:events:eu-west-1:222222222222:event-bus/default"),
    )
    assert [set(answer) for answer in plan.entries] == [{"EventId"}, {"EventId"}]
    assert plan.invocations == []
    assert len(plan.dropped) == 2


def test_each_target_gets_its_own_invocation_of_one_event(harness: Harness) -> None:
    harness.rule(
        "fan-out",
        {"source": ["shop"]},
        {"Id": "whole", "Arn": FUNCTION_ARN + "whole"},
        {"Id": "const", "Arn": FUNCTION_ARN + "const", "Input": '{"fixed": true}'},
        {"Id": "path", "Arn": FUNCTION_ARN + "path:live", "InputPath": "$.detail.payload"},
        {
            "Id": "shaped",
            "Arn": FUNCTION_ARN + "shaped",
            "InputTransformer": {
                "InputPathsMap": {"id": "$.detail.payload.acc_id"},
                "InputTemplate": '{"account": <id>, "rule": "<aws.events.rule-name>"}',
            },
        },
    )
    plan = harness.put(entry())
    sent = payloads(plan)
    assert sent["whole"]["detail"] == DETAIL
    assert sent["const"] == {"fixed": True}
    assert sent["path"] == DETAIL["payload"]
    assert sent["shaped"] == {"account": "0a787ecb-4015", "rule": "fan-out"}
    qualifiers = {event.function: event.qualifier for event in plan.invocations}
    assert qualifiers["path"] == "live"
    assert len({event.event_id for event in plan.invocations}) == 4
    assert {sent["whole"]["id"]} == {plan.entries[0]["EventId"]}


def test_a_target_that_may_not_be_invoked_does_not_fail_the_entry(tmp_path: Path) -> None:
    harness = Harness(tmp_path / "data", resolver=DenyAll())
    harness.rule("denied", {"source": ["shop"]})
    plan = harness.put(entry())
    assert set(plan.entries[0]) == {"EventId"}
    assert plan.invocations == []
    ((key, target_id, reason),) = plan.failures
    assert (key, target_id) == ("denied", "t")
    assert "rule/denied" in reason
    counts = harness.metrics.snapshot()
    assert counts["FailedInvocations"]["denied"]["Sum"] == 1
    assert counts["MatchedEvents"]["denied"]["Sum"] == 1


def test_patterns_are_compiled_once_per_rule_change(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled: list[Any] = []
    real = bus_module.compile_pattern

    def counting(pattern: Any) -> Any:
        compiled.append(pattern)
        return real(pattern)

    monkeypatch.setattr(bus_module, "compile_pattern", counting)
    harness.rule("r", {"source": ["shop"]})
    for _ in range(5):
        assert len(harness.put(entry(), entry()).invocations) == 2
    assert len(compiled) == 1
    # A change is seen at once: the next request compiles again.
    harness.rules.put_rule("r", event_pattern='{"source": ["elsewhere"]}')
    assert harness.put(entry()).invocations == []
    assert len(compiled) == 2


# --------------------------------------------------------------------------- InputTransformer
# The expected texts are EventBridge's, as recorded on AWS (public recordings, 2024).

PATHS = {"detail-type": "$.detail-type", "timestamp": "$.time", "command": "$.detail.command"}
EVENT = bus_event("id-1", ACCOUNT, "shop", "order placed", DETAIL, [], NOW)
CONTEXT = RuleContext("arn:aws:events:us-east-1:111111111111:rule/b/r", "r", NOW)


@pytest.mark.parametrize(
    ("paths", "template", "expected"),
    [
        (
            PATHS,
            '"Event of <detail-type> type, at <timestamp>, command <command>"',
            '"Event of order placed type, at 2024-06-11T08:33:10Z, command update-account"',
        ),
        (
            {**PATHS, "command": "$.detail.absent"},
            '"Event of <detail-type> type, command <command>"',
            '"Event of order placed type, command "',
        ),
        (
            PATHS,
            '{"detailType": <detail-type>,  "time": <timestamp>, "command": <command>}',
            '{"detailType": "order placed",  "time": "2024-06-11T08:33:10Z", '
            '"command": "update-account"}',
        ),
        (
            {**PATHS, "command": "$.detail.absent"},
            '{"command": <command>}',
            '{"command": ""}',
        ),
        (
            {"p": "$.detail.payload", "n": "$.detail.payload.acc_id"},
            '{"p": <p>, "s": "payload is <p>", "q": "say \\"<n>\\""}',
            '{"p": {"acc_id":"0a787ecb-4015","sf_id":"baz"}, '
            '"s": "payload is {acc_id:0a787ecb-4015,sf_id:baz}", "q": "say \\"0a787ecb-4015\\""}',
        ),
        ({"c": "$.detail.command"}, "<c> is the command", "update-account is the command"),
        (
            {},
            '"<aws.events.rule-arn> <aws.events.rule-name> <aws.events.event.ingestion-time>"',
            '"arn:aws:events:us-east-1:111111111111:rule/b/r r 2024-06-11T08:33:10.500Z"',
        ),
    ],
)
def test_input_templates_are_filled_as_eventbridge_fills_them(
    paths: dict[str, str], template: str, expected: str
) -> None:
    transformer = {"InputPathsMap": paths, "InputTemplate": template}
    assert transform(transformer, EVENT, CONTEXT) == expected


def test_the_original_event_variables() -> None:
    template = '{"originalEvent": <aws.events.event>, "originalEventJson": <aws.events.event.json>}'
    filled = orjson.loads(transform({"InputTemplate": template}, EVENT, CONTEXT))
    assert filled["originalEventJson"] == EVENT
    assert filled["originalEvent"] == {
        "id": "id-1",
        "account": "111111111111",
        "detailType": "order placed",
        "time": "2024-06-11T08:33:10.500Z",
        "source": "shop",
        "region": "us-east-1",
        "resources": [],
        "version": "0",
    }


# --------------------------------------------------------------------------- old data


def test_rules_kept_before_buses_existed_move_to_the_default_bus(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with sqlite3.connect(data_dir / "lamina.db") as old:
        old.executescript(
            "CREATE TABLE event_rules (name TEXT PRIMARY KEY, doc BLOB NOT NULL, "
            "next_fire_at INTEGER, last_fired INTEGER);"
            "CREATE TABLE event_rule_targets (rule TEXT NOT NULL, id TEXT NOT NULL, "
            "arn TEXT NOT NULL, doc BLOB NOT NULL, PRIMARY KEY (rule, id));"
        )
        old.execute(
            "INSERT INTO event_rules VALUES (?, ?, ?, ?)",
            ("tick", orjson.dumps({"ScheduleExpression": "rate(1 minute)", "Anchor": 60}), 120, 60),
        )
        old.execute(
            "INSERT INTO event_rules VALUES (?, ?, NULL, NULL)",
            ("matcher", orjson.dumps({"EventPattern": '{"source": ["shop"]}'})),
        )
        old.execute(
            "INSERT INTO event_rule_targets VALUES (?, ?, ?, ?)",
            (
                "matcher",
                "t",
                FUNCTION_ARN + "f",
                orjson.dumps({"Id": "t", "Arn": FUNCTION_ARN + "f"}),
            ),
        )
    rules = open_stores(data_dir).rules
    tick = rules.get("tick", DEFAULT_BUS)
    assert tick is not None and (tick.next_fire_at, tick.last_fired, tick.anchor) == (120, 60, 60)
    ((matcher, targets),) = rules.pattern_rules()
    assert (matcher.name, [t.id for t in targets]) == ("matcher", ["t"])
    assert open_stores(data_dir).rules.get("tick") == tick  # opening again changes nothing
