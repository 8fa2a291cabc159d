"""FilterCriteria on records and partial batch responses: the rules every poller shares."""

from __future__ import annotations

import base64

import orjson
import pytest

from lamina.pollers.filters import RecordFilter, json_base64, json_only, json_or_text, with_data
from lamina.pollers.responses import WholeBatchFailed, failed_items


def sqs_view(body: str) -> dict[str, object]:
    return with_data(
        {"messageId": "m", "body": body, "eventSource": "aws:sqs"}, "body", json_or_text(body)
    )


def kinesis_view(data: bytes) -> dict[str, object]:
    encoded = base64.b64encode(data).decode()
    record = {"partitionKey": "k", "data": encoded}
    return with_data(record, "data", json_base64(encoded))


# ---------------------------------------------------------------- filters


def test_no_patterns_keep_every_record() -> None:
    kept, dropped = RecordFilter([]).split(["a", "b"], lambda r: {"body": r})
    assert (kept, dropped) == (["a", "b"], [])
    assert not RecordFilter([]).active


def test_json_body_matches_a_json_pattern() -> None:
    rule = RecordFilter(['{"body": {"kind": ["order"]}}'])
    assert rule.matches(sqs_view('{"kind": "order", "n": 1}'))
    assert not rule.matches(sqs_view('{"kind": "refund"}'))


def test_json_pattern_never_matches_a_plain_text_body() -> None:
    rule = RecordFilter(['{"body": {"kind": ["order"]}}'])
    assert not rule.matches(sqs_view("kind=order"))


def test_plain_pattern_matches_a_plain_text_body_but_not_a_json_one() -> None:
    rule = RecordFilter(['{"body": [{"prefix": "hello"}]}'])
    assert rule.matches(sqs_view("hello world"))
    assert not rule.matches(sqs_view('{"hello": "world"}'))


def test_patterns_are_ored_and_metadata_is_filterable() -> None:
    rule = RecordFilter(
        ['{"body": {"n": [{"numeric": [">", 10]}]}}', '{"messageId": ["m"], "body": ["x"]}']
    )
    assert rule.matches(sqs_view('{"n": 11}'))
    assert rule.matches(sqs_view("x"))
    assert not rule.matches(sqs_view('{"n": 3}'))


def test_split_keeps_the_batch_order() -> None:
    rule = RecordFilter(['{"body": {"keep": [true]}}'])
    bodies = ['{"keep": true, "i": 0}', '{"keep": false}', "text", '{"keep": true, "i": 3}']
    kept, dropped = rule.split(bodies, sqs_view)
    assert kept == [bodies[0], bodies[3]]
    assert dropped == [bodies[1], bodies[2]]


def test_stream_data_is_matched_decoded() -> None:
    rule = RecordFilter(['{"data": {"temperature": [{"numeric": [">=", 30]}]}}'])
    assert rule.matches(kinesis_view(b'{"temperature": 31}'))
    assert not rule.matches(kinesis_view(b'{"temperature": 12}'))


def test_non_json_stream_data_matches_no_pattern_on_data() -> None:
    rule = RecordFilter(['{"data": [{"prefix": "ab"}]}'])
    assert not rule.matches(kinesis_view(b"abc, not JSON"))
    # Metadata patterns still apply.
    assert RecordFilter(['{"partitionKey": ["k"]}']).matches(kinesis_view(b"abc"))


def test_decoders() -> None:
    assert json_or_text('{"a": 1}') == {"a": 1}
    assert json_or_text("plain") == "plain"
    assert json_or_text("12") == 12
    assert json_only(b"[1, 2]") == [1, 2]
    assert json_base64(base64.b64encode(b'{"x": "y"}').decode()) == {"x": "y"}
    assert "data" not in with_data({"data": "!!"}, "data", json_base64("!!not base64"))


# ---------------------------------------------------------------- responses

KNOWN = {"id-1", "id-2", "id-3"}


@pytest.mark.parametrize(
    "payload",
    [b"", b"null", b"{}", b'{"batchItemFailures": []}', b'{"batchItemFailures": null}', b'"ok"'],
)
def test_full_success(payload: bytes) -> None:
    assert failed_items(payload, KNOWN) == []


def test_reported_failures_in_order() -> None:
    payload = orjson.dumps(
        {"batchItemFailures": [{"itemIdentifier": "id-3"}, {"itemIdentifier": "id-1"}]}
    )
    assert failed_items(payload, KNOWN) == ["id-3", "id-1"]


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b'{"batchItemFailures": [{"itemIdentifier": ""}]}',
        b'{"batchItemFailures": [{"itemIdentifier": null}]}',
        b'{"batchItemFailures": [{"itemId": "id-1"}]}',
        b'{"batchItemFailures": [{"itemIdentifier": "id-9"}]}',
        b'{"batchItemFailures": ["id-1"]}',
        b'{"batchItemFailures": "id-1"}',
    ],
)
def test_whole_batch_failed(payload: bytes) -> None:
    with pytest.raises(WholeBatchFailed):
        failed_items(payload, KNOWN)
