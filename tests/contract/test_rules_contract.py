"""The RuleStore contract: event buses, rules named within their bus and their targets,
paging, due ticks, the compare-and-set claim (once, even between schedulers racing),
transactions shared with the async queue, and the change stamp caches key on."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from lamina.model.rules import DEFAULT_BUS, DISABLED, EventBus, Rule, Target
from lamina.store.protocols import AsyncEvent, RuleStore
from tests.support.backends import Backend

FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:f"


@pytest.fixture
def rules(store_backend: Backend) -> RuleStore:
    return store_backend.stores().rules


def rule(name: str, next_fire_at: int | None = None) -> Rule:
    return Rule(name, schedule_expression="rate(1 minute)", anchor=60, next_fire_at=next_fire_at)


def target(target_id: str, arn: str = FUNCTION_ARN) -> Target:
    return Target(target_id, arn, {"Id": target_id, "Arn": arn, "Input": '{"k": 1}'})


def test_a_rule_round_trips(rules: RuleStore) -> None:
    sent = Rule(
        "nightly",
        schedule_expression="cron(0 3 * * ? *)",
        event_pattern=None,
        state=DISABLED,
        description="backups",
        role_arn="arn:aws:iam::123456789012:role/r",
        tags={"team": "ops"},
        anchor=120,
        next_fire_at=3600,
    )
    rules.put(sent)
    assert rules.get("nightly") == sent
    assert rules.get("missing") is None


def test_put_replaces_the_rule_but_keeps_its_last_tick(rules: RuleStore) -> None:
    rules.put(rule("r", next_fire_at=60))
    assert rules.claim("r", 60, 60, 120)
    rules.put(Rule("r", schedule_expression="rate(5 minutes)", next_fire_at=300))
    stored = rules.get("r")
    assert stored is not None
    assert (stored.schedule_expression, stored.next_fire_at, stored.last_fired) == (
        "rate(5 minutes)",
        300,
        60,
    )


def test_rules_page_by_name_and_prefix(rules: RuleStore) -> None:
    for name in ["b-two", "a_one", "axone", "b-one", "c"]:
        rules.put(rule(name))
    assert [r.name for r in rules.page(None, None, 10)] == ["a_one", "axone", "b-one", "b-two", "c"]
    assert [r.name for r in rules.page(None, None, 2)] == ["a_one", "axone"]
    assert [r.name for r in rules.page(None, "axone", 2)] == ["b-one", "b-two"]
    # A prefix is literal: `_` matches only `_`.
    assert [r.name for r in rules.page("a_", None, 10)] == ["a_one"]
    assert [r.name for r in rules.page("b-", "b-one", 10)] == ["b-two"]
    assert rules.page("zzz", None, 10) == []


def test_targets_are_replaced_by_id_listed_by_id_and_removed(rules: RuleStore) -> None:
    rules.put(rule("r"))
    rules.put_targets("r", [target("2"), target("1")])
    assert [t.id for t in rules.targets("r")] == ["1", "2"]
    assert rules.targets("r")[0] == target("1")
    other = "arn:aws:lambda:us-east-1:123456789012:function:g"
    rules.put_targets("r", [target("1", other)])
    assert [(t.id, t.arn) for t in rules.targets("r")] == [("1", other), ("2", FUNCTION_ARN)]
    rules.remove_targets("r", ["2", "not-there"])
    assert [t.id for t in rules.targets("r")] == ["1"]
    assert rules.targets("missing") == []


def test_rules_with_a_target_are_listed_once_by_name_and_page(rules: RuleStore) -> None:
    for name in ["r3", "r1", "r2", "unrelated"]:
        rules.put(rule(name))
    rules.put_targets("r1", [target("a"), target("b")])  # two targets, one rule
    rules.put_targets("r2", [target("a")])
    rules.put_targets("r3", [target("a")])
    rules.put_targets("unrelated", [target("a", "arn:other")])
    assert rules.rules_with_target(FUNCTION_ARN, None, 10) == ["r1", "r2", "r3"]
    assert rules.rules_with_target(FUNCTION_ARN, None, 2) == ["r1", "r2"]
    assert rules.rules_with_target(FUNCTION_ARN, "r2", 2) == ["r3"]


def test_deleting_a_rule_deletes_its_targets(rules: RuleStore) -> None:
    rules.put(rule("r"))
    rules.put_targets("r", [target("1")])
    rules.delete("r")
    assert rules.get("r") is None
    assert rules.targets("r") == []
    assert rules.rules_with_target(FUNCTION_ARN, None, 10) == []
    rules.delete("r")  # again: nothing to do


def test_due_rules_come_longest_overdue_first(rules: RuleStore) -> None:
    assert rules.next_due() is None
    rules.put(rule("later", next_fire_at=300))
    rules.put(rule("overdue", next_fire_at=60))
    rules.put(rule("now", next_fire_at=120))
    rules.put(rule("never"))
    assert [r.name for r in rules.due(120, 10)] == ["overdue", "now"]
    assert [r.name for r in rules.due(120, 1)] == ["overdue"]
    assert rules.due(59, 10) == []
    assert rules.next_due() == 60


def test_a_tick_is_claimed_once(rules: RuleStore) -> None:
    rules.put(rule("r", next_fire_at=60))
    assert rules.claim("r", 60, 60, 120)
    assert not rules.claim("r", 60, 60, 120)  # someone got there first
    stored = rules.get("r")
    assert stored is not None and (stored.next_fire_at, stored.last_fired) == (120, 60)
    assert rules.claim("r", 120, 120, None)  # the last tick: it fires no more
    assert rules.due(10_000, 10) == [] and rules.next_due() is None
    assert not rules.claim("missing", 60, 60, 120)


def test_racing_schedulers_claim_each_tick_exactly_once(store_backend: Backend) -> None:
    store_backend.stores().rules.put(rule("r", next_fire_at=60))
    won: list[tuple[str, int]] = []
    start = threading.Barrier(4)

    def scheduler(name: str) -> None:
        rules = store_backend.stores().rules  # its own handle, as another node would have
        start.wait()
        for tick in range(60, 60 * 21, 60):
            if rules.claim("r", tick, tick, tick + 60):
                won.append((name, tick))

    threads = [threading.Thread(target=scheduler, args=(f"s{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(tick for _, tick in won) == list(range(60, 60 * 21, 60))


def test_claiming_and_queueing_share_one_transaction(store_backend: Backend) -> None:
    # As the scheduler does it: the queue's transaction, with the claim inside.
    stores = store_backend.stores()
    stores.rules.put(rule("r", next_fire_at=60))
    fired = AsyncEvent("tick-60", "f", None, b"{}", 60.0, 60.0)
    with pytest.raises(RuntimeError), stores.queue.transaction():
        assert stores.rules.claim("r", 60, 60, 120)
        stores.queue.enqueue([fired])
        raise RuntimeError("abort")
    stored = stores.rules.get("r")
    assert stored is not None and stored.next_fire_at == 60
    assert stores.queue.counts() == {}
    with stores.queue.transaction():
        assert stores.rules.claim("r", 60, 60, 120)
        stores.queue.enqueue([fired])
    assert stores.queue.counts()["f"]["queued"] == 1


def test_rules_survive_reopening_the_store(store_backend: Backend) -> None:
    first = store_backend.stores().rules
    first.put(rule("kept", next_fire_at=60))
    first.put_targets("kept", [target("1")])
    first.claim("kept", 60, 60, 120)
    again = store_backend.stores().rules
    stored = again.get("kept")
    assert stored is not None and (stored.next_fire_at, stored.last_fired) == (120, 60)
    assert again.targets("kept") == [target("1")]


# --------------------------------------------------------------------------- event buses


def bus(name: str, created: float = 100.0) -> EventBus:
    return EventBus(name, created=created, modified=created)


def test_a_bus_round_trips_and_is_replaced(rules: RuleStore) -> None:
    sent = EventBus(
        "orders",
        created=100.5,
        modified=200.25,
        description="order events",
        tags={"team": "shop"},
        extras={"KmsKeyIdentifier": "alias/k", "LogConfig": {"Level": "OFF"}},
    )
    rules.put_bus(sent)
    assert rules.get_bus("orders") == sent
    assert rules.get_bus("missing") is None
    rules.put_bus(replace(sent, description=None, modified=300.0))
    stored = rules.get_bus("orders")
    assert stored is not None and (stored.description, stored.modified) == (None, 300.0)


def test_buses_page_by_name_and_prefix(rules: RuleStore) -> None:
    for name in ["b-two", "a_one", "axone", "b-one", "c"]:
        rules.put_bus(bus(name))
    assert [b.name for b in rules.buses(None, None, 10)] == [
        "a_one",
        "axone",
        "b-one",
        "b-two",
        "c",
    ]
    assert [b.name for b in rules.buses(None, "axone", 2)] == ["b-one", "b-two"]
    assert [b.name for b in rules.buses("a_", None, 10)] == ["a_one"]  # `_` is literal
    assert rules.buses("zzz", None, 10) == []


def test_deleting_a_bus(rules: RuleStore) -> None:
    rules.put_bus(bus("gone"))
    rules.delete_bus("gone")
    assert rules.get_bus("gone") is None
    rules.delete_bus("gone")  # again: nothing to do


def test_rules_are_named_within_their_bus(rules: RuleStore) -> None:
    rules.put_bus(bus("orders"))
    rules.put(rule("same"))
    rules.put(Rule("same", event_pattern='{"source": ["shop"]}', bus="orders"))
    on_default, on_orders = rules.get("same"), rules.get("same", "orders")
    assert on_default is not None and on_default.bus == DEFAULT_BUS
    assert on_default.schedule_expression == "rate(1 minute)"
    assert on_orders is not None and on_orders.bus == "orders"
    assert on_orders.event_pattern == '{"source": ["shop"]}'
    assert rules.has_rules("orders") and rules.has_rules(DEFAULT_BUS)
    assert not rules.has_rules("empty")

    rules.put(Rule("other", event_pattern="{}", bus="orders"))
    assert [r.name for r in rules.page(None, None, 10, "orders")] == ["other", "same"]
    assert [r.name for r in rules.page(None, None, 10)] == ["same"]

    rules.put_targets("same", [target("on-orders")], "orders")
    rules.put_targets("same", [target("on-default")])
    assert [t.id for t in rules.targets("same", "orders")] == ["on-orders"]
    assert [t.id for t in rules.targets("same")] == ["on-default"]
    assert rules.rules_with_target(FUNCTION_ARN, None, 10, "orders") == ["same"]
    rules.remove_targets("same", ["on-orders"], "orders")
    assert rules.targets("same", "orders") == []
    assert [t.id for t in rules.targets("same")] == ["on-default"]

    rules.delete("same", "orders")
    assert rules.get("same", "orders") is None
    assert rules.get("same") is not None
    assert [t.id for t in rules.targets("same")] == ["on-default"]


def test_pattern_rules_come_with_their_targets(rules: RuleStore) -> None:
    rules.put_bus(bus("orders"))
    rules.put(rule("scheduled"))  # no pattern: not listed
    rules.put(Rule("plain", event_pattern='{"source": ["a"]}'))
    rules.put(Rule("aimed", event_pattern='{"source": ["b"]}', state=DISABLED, bus="orders"))
    rules.put_targets("aimed", [target("2"), target("1")], "orders")
    rules.put_targets("scheduled", [target("x")])
    listed = {(r.bus, r.name): [t.id for t in ts] for r, ts in rules.pattern_rules()}
    assert listed == {(DEFAULT_BUS, "plain"): [], ("orders", "aimed"): ["1", "2"]}
    (disabled,) = [r for r, _ in rules.pattern_rules() if r.name == "aimed"]
    assert disabled.state == DISABLED
    # A pattern taken away takes the rule off the list.
    rules.put(Rule("plain", schedule_expression="rate(1 day)"))
    assert [r.name for r, _ in rules.pattern_rules()] == ["aimed"]


def test_the_change_stamp_moves_with_every_change_but_a_claimed_tick(
    store_backend: Backend,
) -> None:
    rules = store_backend.stores().rules
    other = store_backend.stores().rules  # another handle, as another process would have
    seen = [rules.change_stamp()]

    def moved() -> bool:
        stamp = other.change_stamp()
        changed = stamp != seen[-1]
        seen.append(stamp)
        return changed

    rules.put_bus(bus("orders"))
    assert moved()
    rules.put(rule("r", next_fire_at=60))
    assert moved()
    rules.put_targets("r", [target("1")])
    assert moved()
    assert rules.claim("r", 60, 60, 120)
    assert not moved()
    rules.remove_targets("r", ["1"])
    assert moved()
    rules.delete("r")
    assert moved()
    rules.delete_bus("orders")
    assert moved()
    # A change rolled back leaves it where it was.
    with pytest.raises(RuntimeError), rules.transaction():
        rules.put(rule("never"))
        raise RuntimeError("abort")
    assert not moved()


def test_buses_survive_reopening_the_store(store_backend: Backend) -> None:
    first = store_backend.stores().rules
    first.put_bus(bus("kept", created=5.0))
    first.put(Rule("r", event_pattern="{}", bus="kept"))
    first.put_targets("r", [target("1")], "kept")
    again = store_backend.stores().rules
    assert again.get_bus("kept") == bus("kept", created=5.0)
    stored = again.get("r", "kept")
    assert stored is not None and stored.event_pattern == "{}"
    assert again.targets("r", "kept") == [target("1")]
