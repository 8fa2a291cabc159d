"""The FunctionStore contract: functions, versions, aliases and child documents, their order
and paging, the change stamp, and transactions."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise
from typing import Any

import pytest

from lamina.model.functions import (
    Alias,
    FunctionConfig,
    FunctionRecord,
    LayerRef,
    LoggingConfig,
)
from lamina.store.protocols import FunctionStore
from tests.support.backends import Backend

ROLE = "arn:aws:iam::123456789012:role/contract"


@pytest.fixture
def functions(store_backend: Backend) -> FunctionStore:
    return store_backend.stores().functions


def config(name: str, version: str = "$LATEST", code_size: int = 100) -> FunctionConfig:
    return FunctionConfig(
        function_name=name,
        role=ROLE,
        runtime="python3.12",
        handler="app.handler",
        code_sha256="c0de",
        code_size=code_size,
        code_blob="b" * 64,
        unzipped_size=2 * code_size,
        version=version,
    )


def record(name: str, code_size: int = 100, **fields: Any) -> FunctionRecord:
    return FunctionRecord(latest=config(name, code_size=code_size), **fields)


def test_a_record_round_trips_with_every_nested_member(functions: FunctionStore) -> None:
    latest = replace(
        config("full"),
        environment={"KEY": "välue"},
        layers=(LayerRef("arn:aws:lambda:us-east-1:123456789012:layer:l:1", 10, 20, "ab"),),
        logging=LoggingConfig("JSON", "DEBUG", "WARN", "/custom/group"),
        architectures=("arm64",),
        vpc_config={"SubnetIds": ["s-1"], "SecurityGroupIds": []},
        file_system_configs=({"Arn": "arn:fs", "LocalMountPath": "/mnt/x"},),
        dead_letter_target="arn:aws:sqs:us-east-1:123456789012:dlq",
    )
    sent = FunctionRecord(
        latest=latest,
        last_published=4,
        tags={"team": "a"},
        reserved_concurrency=0,
        recursive_loop="Allow",
        code_signing_config_arn="arn:csc",
    )
    functions.put(sent)
    assert functions.get("full") == sent


def test_missing_things_are_none_and_deleting_them_is_harmless(functions: FunctionStore) -> None:
    assert functions.get("nope") is None
    assert functions.get_version("nope", 1) is None
    assert functions.get_alias("nope", "live") is None
    assert functions.get_child("nope", "policy", "") is None
    functions.delete("nope")
    functions.delete_version("nope", 1)
    functions.delete_alias("nope", "live")
    functions.delete_child("nope", "policy", "")
    assert functions.count() == 0


def test_put_replaces_the_record(functions: FunctionStore) -> None:
    functions.put(record("f", code_size=1))
    functions.put(record("f", code_size=2, tags={"v": "2"}))
    stored = functions.get("f")
    assert stored is not None
    assert (stored.latest.code_size, stored.tags) == (2, {"v": "2"})
    assert functions.count() == 1


def test_functions_page_in_name_order(functions: FunctionStore) -> None:
    for name in ["charlie", "alpha", "delta", "bravo", "echo"]:
        functions.put(record(name))
    first = functions.page(None, 2)
    assert [r.name for r in first] == ["alpha", "bravo"]
    second = functions.page(first[-1].name, 2)
    assert [r.name for r in second] == ["charlie", "delta"]
    assert [r.name for r in functions.page("delta", 2)] == ["echo"]
    assert functions.page("echo", 2) == []
    assert list(functions.names()) == ["alpha", "bravo", "charlie", "delta", "echo"]
    assert functions.count() == 5


def test_versions_are_listed_in_numeric_order_and_page(functions: FunctionStore) -> None:
    functions.put(record("f"))
    tenth = config("f", "10", code_size=10)
    for number in [2, 1, 9]:
        functions.put_version(config("f", str(number), code_size=number))
    functions.put_version(tenth)
    functions.put_version(config("other", "3"))
    listed = functions.list_versions("f", None, 10)
    assert [v.version for v in listed] == ["1", "2", "9", "10"]
    assert [v.version for v in functions.list_versions("f", 2, 1)] == ["9"]
    assert [v.version for v in functions.list_versions("f", 10, 5)] == []
    assert functions.get_version("f", 10) == tenth
    functions.delete_version("f", 2)
    assert functions.get_version("f", 2) is None
    assert [v.version for v in functions.list_versions("f", None, 10)] == ["1", "9", "10"]


def test_aliases_round_trip_and_list_by_name(functions: FunctionStore) -> None:
    functions.put(record("f"))
    live = Alias("f", "live", "2", "prod traffic", {"3": 0.25})
    functions.put_alias(live)
    functions.put_alias(Alias("f", "beta", "3"))
    functions.put_alias(Alias("g", "other", "1"))
    assert functions.get_alias("f", "live") == live
    assert [a.name for a in functions.list_aliases("f")] == ["beta", "live"]
    moved = replace(live, function_version="3", additional_weights={})
    functions.put_alias(moved)
    assert functions.get_alias("f", "live") == moved
    functions.delete_alias("f", "beta")
    assert functions.list_aliases("f") == [moved]


def test_children_are_kept_per_function_kind_and_key(functions: FunctionStore) -> None:
    functions.put_child("f", "policy", "", {"statements": {"a": 1}})
    functions.put_child("f", "policy", "live", {"statements": {}})
    functions.put_child("f", "url", "", {"AuthType": "NONE"})
    functions.put_child("e", "policy", "2", {"statements": {"b": 2}})
    assert functions.get_child("f", "policy", "") == {"statements": {"a": 1}}
    assert functions.list_children("f", "policy") == [
        ("", {"statements": {"a": 1}}),
        ("live", {"statements": {}}),
    ]
    assert functions.list_children_of_kind("policy") == [
        ("e", "2", {"statements": {"b": 2}}),
        ("f", "", {"statements": {"a": 1}}),
        ("f", "live", {"statements": {}}),
    ]
    functions.put_child("f", "url", "", {"AuthType": "AWS_IAM"})
    assert functions.list_children("f", "url") == [("", {"AuthType": "AWS_IAM"})]
    functions.delete_child("f", "policy", "live")
    assert [key for key, _ in functions.list_children("f", "policy")] == [""]


def test_deleting_a_function_deletes_everything_that_hangs_off_it(functions: FunctionStore) -> None:
    for name in ("f", "g"):
        functions.put(record(name))
        functions.put_version(config(name, "1"))
        functions.put_alias(Alias(name, "live", "1"))
        functions.put_child(name, "policy", "", {"n": name})
    functions.delete("f")
    assert functions.get("f") is None
    assert functions.list_versions("f", None, 10) == []
    assert functions.list_aliases("f") == []
    assert functions.list_children("f", "policy") == []
    assert functions.list_children_of_kind("policy") == [("g", "", {"n": "g"})]
    assert functions.get_alias("g", "live") is not None


def test_total_code_size_counts_latest_and_every_version(functions: FunctionStore) -> None:
    assert functions.total_code_size() == 0
    functions.put(record("f", code_size=100))
    functions.put(record("g", code_size=7))
    functions.put_version(config("f", "1", code_size=30))
    functions.put_version(config("f", "2", code_size=5))
    assert functions.total_code_size() == 142


def test_reservations_are_the_functions_with_reserved_concurrency(
    functions: FunctionStore,
) -> None:
    assert functions.reservations() == {}
    functions.put(record("none"))
    functions.put(record("zero", reserved_concurrency=0))
    functions.put(record("some", reserved_concurrency=25))
    # Read the same with a sealed environment in the record.
    sealed = FunctionRecord(
        latest=replace(config("sealed"), environment={"SECRET": "x"}), reserved_concurrency=7
    )
    functions.put(sealed)
    # A NUL in a record (PostgreSQL's jsonb refuses it) is no obstacle.
    functions.put(record("nul", reserved_concurrency=3, tags={"note": "a\x00b"}))
    assert functions.reservations() == {"zero": 0, "some": 25, "sealed": 7, "nul": 3}
    functions.delete("nul")
    functions.put(record("some"))
    functions.delete("zero")
    assert functions.reservations() == {"sealed": 7}


def test_the_change_stamp_moves_on_every_write(functions: FunctionStore) -> None:
    stamps = [functions.change_stamp()]
    writes = [
        lambda: functions.put(record("f")),
        lambda: functions.put_version(config("f", "1")),
        lambda: functions.put_alias(Alias("f", "live", "1")),
        lambda: functions.put_child("f", "policy", "", {}),
        lambda: functions.delete_alias("f", "live"),
        lambda: functions.delete("f"),
    ]
    for write in writes:
        write()
        stamps.append(functions.change_stamp())
    assert all(later != earlier for earlier, later in pairwise(stamps))
    functions.get("f")
    functions.list_versions("f", None, 10)
    assert functions.change_stamp() == stamps[-1]  # reads leave it alone


def test_a_failed_transaction_leaves_nothing_behind(functions: FunctionStore) -> None:
    functions.put(record("f", code_size=1))
    with pytest.raises(RuntimeError), functions.transaction():
        functions.put(record("f", code_size=2))
        functions.put_version(config("f", "1"))
        with functions.transaction():  # nested: joins the outer one
            functions.put_alias(Alias("f", "live", "1"))
        raise RuntimeError("abort")
    stored = functions.get("f")
    assert stored is not None and stored.latest.code_size == 1
    assert functions.get_version("f", 1) is None
    assert functions.get_alias("f", "live") is None


def test_records_survive_reopening_the_store(store_backend: Backend) -> None:
    first = store_backend.stores().functions
    kept = record("kept")
    with first.transaction():
        first.put(kept)
        first.put_version(config("kept", "1"))
    again = store_backend.stores().functions
    assert again.get("kept") == kept
    assert [v.version for v in again.list_versions("kept", None, 10)] == ["1"]
