"""The AuditStore contract: records come back as appended, filtered and newest-last, across
a reopen, within the size bound, and while a writer appends."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from lamina.store.protocols.audit import AuditQuery, AuditStore, timestamp
from tests.support.backends import Backend


@pytest.fixture
def audit(store_backend: Backend) -> AuditStore:
    return store_backend.audit()


def record(number: int, **fields: Any) -> dict[str, Any]:
    base = {
        "Time": timestamp(1_700_000_000 + number),
        "RequestId": f"r{number}",
        "Caller": "anonymous",
        "SourceIp": "192.0.2.1",
        "UserAgent": None,
        "Service": "lambda",
        "Operation": "GetFunction",
        "Resource": "fn",
        "Status": 200,
        "ErrorCode": None,
        "DurationMs": 1.5,
    }
    return {**base, **fields}


def request_ids(records: list[dict[str, Any]]) -> list[str]:
    return [item["RequestId"] for item in records]


def test_records_come_back_whole_and_in_order(audit: AuditStore) -> None:
    sent = [record(1, UserAgent="Botocore/1.0 ünïcode"), record(2), record(3, Status=404)]
    audit.append(sent[:2])
    audit.append(sent[2:])
    assert audit.query(AuditQuery(limit=10)) == sent


def test_an_empty_store_has_no_records(audit: AuditStore) -> None:
    assert audit.query(AuditQuery()) == []


def test_the_limit_keeps_the_newest(audit: AuditStore) -> None:
    audit.append([record(n) for n in range(10)])
    assert request_ids(audit.query(AuditQuery(limit=3))) == ["r7", "r8", "r9"]


def test_filters(audit: AuditStore) -> None:
    audit.append(
        [
            record(1, Operation="CreateFunction", Resource="alpha", Status=201),
            record(2, Operation="GetFunction", Resource="beta", Status=404, ErrorCode="X"),
            record(
                3,
                Operation="UpdateFunctionCode",
                Resource="arn:aws:lambda:us-east-1:000000000000:function:alpha:prod",
            ),
            record(4, Operation=None, Resource=None, Status=404),
            record(5, Operation="GetFunction", Resource="alphabet", Status=500),
        ]
    )

    def ids(**query: Any) -> list[str]:
        return request_ids(audit.query(AuditQuery(**query)))

    assert ids(function="alpha") == ["r1", "r3"]
    assert ids(function="arn:aws:lambda:us-east-1:000000000000:function:alpha") == ["r1", "r3"]
    assert ids(function="alpha:prod") == ["r1", "r3"]
    assert ids(operation="getfunction") == ["r2", "r5"]
    assert ids(failed=True) == ["r2", "r4", "r5"]
    assert ids(since=timestamp(1_700_000_003)) == ["r3", "r4", "r5"]
    assert ids(failed=True, operation="GetFunction", limit=1) == ["r5"]
    assert ids(function="nobody") == []


def test_records_survive_reopening(store_backend: Backend) -> None:
    first = store_backend.audit()
    first.append([record(1)])
    first.close()
    again = store_backend.audit()
    again.append([record(2)])
    assert request_ids(again.query(AuditQuery())) == ["r1", "r2"]


def test_the_store_stays_within_its_bound_and_keeps_the_newest(store_backend: Backend) -> None:
    bound = 16 * 1024
    audit = store_backend.audit(max_bytes=bound)
    for number in range(1000):  # about 200 kB of records, a dozen times the bound
        audit.append([record(number)])
    kept = audit.query(AuditQuery(limit=10_000))
    numbers = [int(item["RequestId"][1:]) for item in kept]
    assert numbers[-1] == 999
    assert numbers == list(range(numbers[0], 1000))  # the newest, without holes
    assert numbers[0] > 0
    size = sum(len(str(item)) for item in kept)
    assert size <= 2 * bound


def test_readers_see_whole_records_while_a_writer_appends(store_backend: Backend) -> None:
    audit = store_backend.audit(max_bytes=32 * 1024)
    done = threading.Event()
    seen: list[list[dict[str, Any]]] = []

    def reader() -> None:
        while not done.is_set():
            seen.append(audit.query(AuditQuery(limit=50)))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for number in range(600):
            audit.append([record(number, Padding="p" * 100)])
    finally:
        done.set()
        thread.join(60)
    assert len(seen) > 1
    for records in seen:
        # Never a torn record, never one twice, never out of order.
        assert all(
            item == record(int(item["RequestId"][1:]), Padding="p" * 100) for item in records
        )
        numbers = [int(item["RequestId"][1:]) for item in records]
        assert numbers == sorted(set(numbers))
