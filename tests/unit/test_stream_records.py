"""On-failure records of stream mappings and tumbling windows, as Lambda shapes them."""

from __future__ import annotations

import re
from dataclasses import replace

from lamina.model.mappings import ENABLED, KINESIS, EventSourceMapping
from lamina.pollers.invoking import FUNCTION_ERROR, BatchResult
from lamina.pollers.on_failure import (
    RECORD_AGE_EXCEEDED,
    RETRY_ATTEMPTS_EXHAUSTED,
    failure_record,
    iso_time,
    s3_key,
)
from lamina.pollers.windows import TumblingWindow, window_start
from tests.support.domain import ACCOUNT

STREAM = "arn:aws:kinesis:us-east-1:123456789012:stream/orders"
MAPPING = EventSourceMapping(
    uuid="5f0c1e2a-0000-4000-8000-000000000001",
    kind=KINESIS,
    function_name="consumer",
    function_arn=ACCOUNT.function_arn("consumer", None),
    event_source_arn=STREAM,
    state=ENABLED,
    state_transition_reason="User action",
    enabled=True,
    last_modified=1.0,
    batch_size=100,
)
NOW = 1573691886.021  # 2019-11-14T00:38:06.021Z


def test_an_exhausted_batch_is_described_with_its_last_response() -> None:
    result = BatchResult(
        FUNCTION_ERROR, "c9b8fa9f", executed_version="$LATEST", function_error="Unhandled"
    )
    record = failure_record(
        MAPPING,
        batch_info_key="KinesisBatchInfo",
        shard_id="shardId-000000000001",
        sequences=["4960", "4961", "4962"],
        arrivals=[1573691884.835, 1573691885.1, 1573691885.58],
        condition=RETRY_ATTEMPTS_EXHAUSTED,
        invoke_count=3,
        result=result,
        now=NOW,
    )
    assert record == {
        "requestContext": {
            "requestId": "c9b8fa9f",
            "functionArn": MAPPING.function_arn,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 3,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": "2019-11-14T00:38:06.021Z",
        "KinesisBatchInfo": {
            "shardId": "shardId-000000000001",
            "startSequenceNumber": "4960",
            "endSequenceNumber": "4962",
            "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
            "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
            "batchSize": 3,
            "streamArn": STREAM,
        },
    }


def test_an_expired_batch_has_no_response_context() -> None:
    record = failure_record(
        replace(MAPPING, event_source_arn="arn:aws:dynamodb:us-east-1:1:table/t/stream/x"),
        batch_info_key="DDBStreamBatchInfo",
        shard_id="shardId-00000001573689847184-864758bb",
        sequences=["800000000003126276362"],
        arrivals=[1573690399.0],
        condition=RECORD_AGE_EXCEEDED,
        invoke_count=0,
        result=None,
        millis=False,
        now=NOW,
    )
    assert "responseContext" not in record
    assert record["requestContext"]["condition"] == "RecordAgeExceeded"
    info = record["DDBStreamBatchInfo"]
    assert info["approximateArrivalOfFirstRecord"] == "2019-11-14T00:13:19Z"
    assert info["batchSize"] == 1


def test_s3_keys_follow_lambdas_layout() -> None:
    key = s3_key("uuid-1", "shardId-000000000000", NOW)
    assert re.fullmatch(
        r"aws/lambda/uuid-1/shardId-000000000000/2019/11/14/2019-11-14T00\.38\.06-[0-9a-f-]{36}",
        key,
    )


def test_iso_times() -> None:
    assert iso_time(0.5) == "1970-01-01T00:00:00.500Z"
    assert iso_time(0.5, millis=False) == "1970-01-01T00:00:00Z"


def test_windows_align_to_the_epoch_and_carry_state() -> None:
    assert window_start(1596128461.7, 300) == 1596128400
    window = TumblingWindow(300)
    window.open(1596128461.7)
    assert window.holds(1596128699.9) and not window.holds(1596128700.0)
    window.take({"state": {"1": 282}, "batchItemFailures": []})
    window.take("not an object")
    assert window.fields("shardId-000000000006", STREAM, final=True) == {
        "window": {"start": "2020-07-30T17:00:00Z", "end": "2020-07-30T17:05:00Z"},
        "state": {"1": 282},
        "shardId": "shardId-000000000006",
        "eventSourceARN": STREAM,
        "isFinalInvokeForWindow": True,
        "isWindowTerminatedEarly": False,
    }
    restored = TumblingWindow.from_doc(300, window.to_doc())
    assert restored == window
    window.close()
    assert window.to_doc() is None
