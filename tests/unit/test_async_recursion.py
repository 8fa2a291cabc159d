"""The recursion guard: hop counting on destination chains, and where it stops them."""

from __future__ import annotations

from lamina.invoke.asynchronous.policy import GiveUp, RetryPolicy
from lamina.invoke.asynchronous.records import RECURSIVE_LOOP_DETECTED
from lamina.invoke.asynchronous.recursion import MAX_HOPS, loop_detected, next_hop
from lamina.store.protocols import AsyncEvent
from tests.support import async_builders
from tests.support.async_builders import ENQUEUED as NOW
from tests.support.async_builders import event_config, function_record


def event(hops: int) -> AsyncEvent:
    return async_builders.event(hops=hops)


def test_a_chain_is_stopped_at_the_hop_limit_under_terminate() -> None:
    assert not loop_detected(event(MAX_HOPS - 1), "Terminate")
    assert loop_detected(event(MAX_HOPS), "Terminate")
    assert loop_detected(event(MAX_HOPS + 5), "Terminate")


def test_allow_lets_a_chain_run_on() -> None:
    assert not loop_detected(event(MAX_HOPS * 2), "Allow")


def test_each_hop_is_a_new_event_one_hop_further() -> None:
    cause = event(hops=3)
    follow_up = next_hop(cause, "g", "live", '{"version": "1.0"}', NOW + 7)
    assert follow_up.hops == 4
    assert follow_up.event_id != cause.event_id
    assert (follow_up.function, follow_up.qualifier) == ("g", "live")
    assert follow_up.payload == b'{"version": "1.0"}'
    assert follow_up.enqueued_at == follow_up.next_attempt_at == NOW + 7
    assert (follow_up.attempts, follow_up.requeues, follow_up.state) == (0, 0, "queued")


def test_the_policy_refuses_a_looping_event_only_under_terminate() -> None:
    policy = RetryPolicy()
    looping = event(MAX_HOPS)
    assert policy.before_run(looping, function_record(), event_config(), NOW) == GiveUp(
        RECURSIVE_LOOP_DETECTED
    )
    allowed = function_record(recursive_loop="Allow")
    assert policy.before_run(looping, allowed, event_config(), NOW) is None
