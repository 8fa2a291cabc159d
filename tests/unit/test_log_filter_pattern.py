"""Filter patterns: term, phrase, any-of, none-of, JSON and regex; the store and Python agree."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.errors import InvalidParameter
from lamina.observability.filter_pattern import compile_pattern
from lamina.store.sqlite import open_log_store

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
        "%unreach[a-z]+%",
        "",
    ],
)
def test_the_store_agrees_with_python(pattern: str, tmp_path: Path) -> None:
    """The store narrows with the substring tests and checks in Python only when they are
    not exact: either way it finds what the pattern matches."""
    compiled = compile_pattern(pattern)
    narrowed = [
        line
        for line in LINES
        if all(term in line for term in compiled.all_of)
        and not any(term in line for term in compiled.none_of)
        and (not compiled.any_of or any(term in line for term in compiled.any_of))
    ]
    if compiled.exact:
        assert narrowed == matching(pattern)
    else:
        assert set(matching(pattern)) <= set(narrowed)
    store = open_log_store(tmp_path, 1 << 20)
    store.append([("/g", "s", [(n, line) for n, line in enumerate(LINES)])])
    found, more = store.filter_events(store.group("/g").id, None, None, None, compiled, None, 100)
    store.close()
    assert ([event.message for event in found], more) == (matching(pattern), False)
