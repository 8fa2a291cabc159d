"""The pieces of routing that need no server: node signatures, the wire encoding of calls,
outcomes, errors and stream frames, and rendezvous ranking."""

from __future__ import annotations

import random

import pytest

from lamina.arns import FunctionRef
from lamina.cluster import wire
from lamina.cluster.auth import NodeAuth
from lamina.cluster.rendezvous import rank
from lamina.errors import LaminaError, ResourceNotFound, TooManyRequests
from lamina.invoke.service import InvokeRequest, InvokeResult
from lamina.sandbox.environment import InvokeOutcome

NOW = 1_800_000_000.0


def test_a_signature_holds_for_its_own_call_only() -> None:
    auth = NodeAuth(b"k" * 32)
    header = auth.sign("/p", b"call", b"body", now=NOW)
    assert auth.verify(header, "/p", b"call", b"body", now=NOW + 29)
    assert not auth.verify(header, "/p", b"call", b"other body", now=NOW)
    assert not auth.verify(header, "/q", b"call", b"body", now=NOW)
    assert not auth.verify(header, "/p", b"other", b"body", now=NOW)
    assert not NodeAuth(b"x" * 32).verify(header, "/p", b"call", b"body", now=NOW)
    # Too old or from too far ahead: a replay window of 30 s each way.
    assert not auth.verify(header, "/p", b"call", b"body", now=NOW + 31)
    assert not auth.verify(header, "/p", b"call", b"body", now=NOW - 31)


@pytest.mark.parametrize("header", [None, "", "abc", "²:00", "1800000000:é", ":", "1800000000"])
def test_malformed_signatures_are_refused_not_crashed_on(header: str | None) -> None:
    assert not NodeAuth(b"k" * 32).verify(header, "/p", b"", b"", now=NOW)


def test_a_call_crosses_whole() -> None:
    request = InvokeRequest(
        ref=FunctionRef("f", "live"),
        qualifier=None,
        payload=b'{"a": "\\u00e9"}',
        client_context="e30=",
        trace_id="Root=1-abc",
        request_id="r-1",
        received_at=12.5,
    )
    decoded, stamp = wire.request_of(wire.describe(request, 41), request.payload)
    assert decoded == request
    assert stamp == 41


def test_an_outcome_crosses_whole() -> None:
    outcome = InvokeOutcome(
        payload=b"\x00\xffbinary",
        function_error=True,
        log_tail="line é\n".encode(),
        duration_ms=1.25,
        billed_ms=2,
        init_ms=None,
        max_memory_mb=40,
        status="error",
        error_type="Runtime.ExitError",
    )
    result = InvokeResult("r-1", "3", outcome)
    assert wire.result_of(wire.describe_result(result), outcome.payload) == result
    assert wire.result_of_end(wire.end_frame(result)[5:]) == result


def test_errors_keep_their_class_code_and_words() -> None:
    throttle = TooManyRequests(
        "Rate Exceeded.", Reason="ReservedFunctionConcurrentInvocationLimitExceeded"
    )
    throttle.headers["Retry-After"] = "1"
    back = wire.error_of(wire.describe_error(throttle))
    assert type(back) is TooManyRequests
    assert (back.code, back.status, back.message) == (throttle.code, 429, "Rate Exceeded.")
    assert back.fields == throttle.fields
    assert back.headers == {"Retry-After": "1"}
    missing = wire.error_of(wire.describe_error(ResourceNotFound("Function not found: é")))
    assert isinstance(missing, ResourceNotFound)
    assert missing.message == "Function not found: é"


def test_an_unknown_error_class_arrives_as_its_code() -> None:
    class Elsewhere(LaminaError):
        code = "SomethingException"
        status = 409

    # A class the receiving node does not know (a newer node's) keeps its code and status.
    back = wire.error_of(wire.describe_error(Elsewhere("no")))
    assert isinstance(back, LaminaError)
    assert (back.code, back.status, back.message) == ("SomethingException", 409, "no")


def test_frames_are_read_back_from_pieces_of_any_size() -> None:
    frames = [(wire.CHUNK, b"a" * n) for n in (0, 1, 5, 70_000)] + [(wire.END, b"end")]
    body = b"".join(wire.frame(kind, data) for kind, data in frames)
    rng = random.Random(7)
    for _ in range(20):
        reader, read, at = wire.FrameReader(), [], 0
        while at < len(body):
            step = rng.randint(1, 9000)
            read.extend(reader.feed(body[at : at + step]))
            at += step
        assert read == frames


def test_rendezvous_moves_only_a_leaving_nodes_keys() -> None:
    nodes = [f"node-{index}" for index in range(5)]
    keys = [f"function-{index}:$LATEST" for index in range(2000)]
    before = {key: rank(key, nodes)[0] for key in keys}
    after = {key: rank(key, nodes[:-1])[0] for key in keys}
    moved = [key for key in keys if before[key] != after[key]]
    assert all(before[key] == "node-4" for key in moved)
    # Every node is some keys' home, roughly evenly (a fifth each).
    homes = list(before.values())
    assert all(250 < homes.count(node) < 550 for node in nodes)
    # The order nodes are listed in changes nothing.
    assert all(rank(key, reversed(nodes)) == rank(key, nodes) for key in keys[:50])
