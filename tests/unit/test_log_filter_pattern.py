"""Filter patterns: term, phrase, any-of, none-of, JSON and regex; SQL and Python agree."""

from __future__ import annotations

import sqlite3

import pytest

from lamina.errors import InvalidParameter
from lamina.observability.filter_pattern import compile_pattern

LINES = [
    "START RequestId: 1 Version: $LATEST",
    "[ERROR]\t2024-01-01T00:00:00.000Z\t1\tdatabase unreachable",
    "[WARNING]\t2024-01-01T00:00:00.000Z\t1\tslow query: 1200 ms",
    "error in lower case",
    "Exception: invalid input",
    '{"level": "ERROR", "message": "boom", "latency": 900, "user": {"id": 7}}',
    '{"level": "INFO", "message": "ok", "latency": 12, "tags": ["a", "b"], "cold": true}',
    '{"level": "INFO", "message": "nothing", "latency": null}',
    '{"level": "DEBUG", "message": "UpdateTrail started", "latency": 5.5}',
    "END RequestId: 1",
]


def matching(pattern: str) -> list[str]:
    compiled = compile_pattern(pattern)
    return [line for line in LINES if compiled.matches(line)]


def test_empty_pattern_matches_everything() -> None:
    assert matching("") == LINES
    assert matching("   ") == LINES


def test_terms_must_all_appear_and_are_case_sensitive() -> None:
    assert matching("ERROR") == [LINES[1], LINES[5]]
    assert matching("ERROR unreachable") == [LINES[1]]
    assert matching("error") == [LINES[3]]


def test_quoted_phrase_keeps_spaces_and_punctuation() -> None:
    assert matching('"Exception: invalid"') == [LINES[4]]
    assert matching('"slow query"') == [LINES[2]]


def test_question_mark_terms_are_alternatives() -> None:
    assert matching("?ERROR ?WARNING") == [LINES[1], LINES[2], LINES[5]]


def test_minus_excludes_a_term() -> None:
    assert matching("RequestId -START") == [LINES[9]]
    assert matching("-ERROR -INFO -RequestId") == [LINES[2], LINES[3], LINES[4], LINES[8]]


def test_json_equality_wildcards_and_numbers() -> None:
    assert matching('{ $.level = "ERROR" }') == [LINES[5]]
    assert matching("{ $.level = INFO }") == [LINES[6], LINES[7]]
    assert matching('{ $.message = "Update*" }') == [LINES[8]]
    assert matching("{ $.latency > 100 }") == [LINES[5]]
    assert matching("{ $.latency <= 12 }") == [LINES[6], LINES[8]]
    assert matching('{ $.level != "INFO" }') == [LINES[5], LINES[8]]
    assert matching("{ $.user.id = 7 }") == [LINES[5]]
    assert matching('{ $.tags[1] = "b" }') == [LINES[6]]


def test_json_boolean_operators_and_parentheses() -> None:
    assert matching('{ $.level = "INFO" && $.latency > 10 }') == [LINES[6]]
    assert matching('{ $.level = "ERROR" || $.latency < 6 }') == [LINES[5], LINES[8]]
    assert matching('{ ($.level = "INFO" || $.level = "DEBUG") && $.latency > 1 }') == [
        LINES[6],
        LINES[8],
    ]


def test_json_null_existence_and_booleans() -> None:
    assert matching("{ $.latency IS NULL }") == [LINES[7]]
    assert matching("{ $.tags NOT EXISTS }") == [LINES[5], LINES[7], LINES[8]]
    assert matching("{ $.cold IS TRUE }") == [LINES[6]]


def test_regex_pattern() -> None:
    assert matching("%unreach[a-z]+%") == [LINES[1]]


@pytest.mark.parametrize(
    "pattern", ['{ $.level = "ERROR"', "{ level = 1 }", "{ $.a = }", "[ip, user]", '"unclosed']
)
def test_invalid_patterns_are_invalid_parameters(pattern: str) -> None:
    with pytest.raises(InvalidParameter):
        compile_pattern(pattern)


@pytest.mark.parametrize(
    "pattern",
    [
        "ERROR",
        "ERROR unreachable",
        "?ERROR ?WARNING",
        "RequestId -START",
        '"slow query"',
        '{ $.level = "INFO" }',
        '{ $.level = "ERROR" || $.latency < 6 }',
        "{ $.latency > 100 }",
    ],
)
def test_sql_condition_agrees_with_python(pattern: str) -> None:
    """The store narrows with SQL and checks in Python only when the SQL is not exact."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE log_events (id INTEGER PRIMARY KEY, message TEXT)")
    db.executemany("INSERT INTO log_events (message) VALUES (?)", [(line,) for line in LINES])
    compiled = compile_pattern(pattern)
    clause, params = compiled.sql
    rows = db.execute(
        f"SELECT message FROM log_events WHERE {clause or '1'} ORDER BY id", params
    ).fetchall()
    narrowed = [message for (message,) in rows]
    if not compiled.exact_in_sql:
        narrowed = [message for message in narrowed if compiled.matches(message)]
    assert narrowed == matching(pattern)
