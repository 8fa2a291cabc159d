"""EventBridge event patterns: every operator, the structure around them, and every refusal."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.events.patterns import EventPattern, InvalidPattern, compile_pattern


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """Both ways in (parsed and JSON text) must agree."""
    by_object = compile_pattern(pattern).matches(event)
    assert compile_pattern(json.dumps(pattern)).matches(event) is by_object
    return by_object


def field(conditions: list[Any], *values: Any) -> list[bool]:
    """How `{"x": conditions}` answers for each event `{"x": value}`."""
    pattern = compile_pattern({"x": conditions})
    return [pattern.matches({"x": value}) for value in values]


EC2 = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "111122223333",
    "time": "2017-12-22T18:43:48Z",
    "region": "us-west-1",
    "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
    "detail": {"instance-id": "i-1234567890abcdef0", "state": "terminated", "c-count": 5},
}


# ---------------------------------------------------------------------- structure


def test_the_documented_example_matches_and_any_difference_does_not() -> None:
    pattern = {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Instance State-change Notification"],
        "detail": {"state": ["terminated"]},
    }
    assert matches(pattern, EC2)
    assert not matches(pattern, {**EC2, "source": "aws.s3"})
    assert not matches(pattern, {**EC2, "detail": {"state": "running"}})


def test_fields_are_anded_and_values_ored() -> None:
    pattern = {"source": ["aws.ec2", "aws.fargate"], "region": ["us-west-1"]}
    assert matches(pattern, EC2)
    assert matches(pattern, {**EC2, "source": "aws.fargate"})
    assert not matches(pattern, {**EC2, "source": "aws.s3"})
    assert not matches(pattern, {**EC2, "region": "eu-west-1"})


def test_every_field_the_pattern_names_must_exist() -> None:
    assert not matches({"detail": {"missing": ["x"]}}, EC2)
    assert not matches({"nothing": {"deeper": ["x"]}}, EC2)
    assert not matches({"source": ["aws.ec2"], "other": ["x"]}, EC2)


def test_nested_objects_follow_the_event_nesting() -> None:
    event = {"a": {"b": {"c": "deep"}}}
    assert matches({"a": {"b": {"c": ["deep"]}}}, event)
    assert not matches({"a": {"c": ["deep"]}}, event)
    # A pattern object against a plain value, and a value condition against an object.
    assert not matches({"a": {"b": {"c": {"d": ["deep"]}}}}, event)
    assert not matches({"a": {"b": ["deep"]}}, event)


def test_fields_the_pattern_leaves_out_are_ignored() -> None:
    assert matches({"detail": {"state": ["terminated"]}}, EC2)


def test_an_event_that_is_not_an_object_matches_nothing() -> None:
    pattern = compile_pattern({"x": [{"exists": False}]})
    assert isinstance(pattern, EventPattern)
    assert pattern.matches({})
    assert not pattern.matches("text")  # type: ignore[arg-type]
    assert not pattern.matches(["x"])  # type: ignore[arg-type]
    assert not pattern.matches(None)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- exact values


def test_strings_match_exactly_and_case_sensitively() -> None:
    assert field(["abc"], "abc", "ABC", "abcd", "", None, 1) == [
        True,
        False,
        False,
        False,
        False,
        False,
    ]


def test_numbers_compare_by_value_and_never_match_strings() -> None:
    assert field([5], 5, 5.0, 5.5, "5", True) == [True, True, False, False, False]
    assert field([5.0], 5, 5.0) == [True, True]
    assert field([1e2], 100, 100.0, "1e2") == [True, True, False]
    assert field([0], 0, -0.0, False, None) == [True, True, False, False]
    assert field([123456789012], 123456789012) == [True]  # an account number
    assert field(["5"], 5, "5") == [False, True]


def test_booleans_match_only_booleans() -> None:
    assert field([True], True, False, 1, "true") == [True, False, False, False]
    assert field([False], False, 0, None, "") == [True, False, False, False]


def test_null_empty_string_and_missing_are_three_different_things() -> None:
    null = compile_pattern({"x": [None]})
    empty = compile_pattern({"x": [""]})
    assert [null.matches(event) for event in ({"x": None}, {"x": ""}, {})] == [True, False, False]
    assert [empty.matches(event) for event in ({"x": None}, {"x": ""}, {})] == [False, True, False]
    # The documented example: an empty eventVersion and a null responseElements.
    event = {"detail": {"eventVersion": "", "responseElements": None}}
    assert matches({"detail": {"eventVersion": [""]}}, event)
    assert matches({"detail": {"responseElements": [None]}}, event)
    assert not matches({"detail": {"responseElements": [""]}}, event)


# ---------------------------------------------------------------------- arrays in events


def test_an_event_array_matches_if_any_element_does() -> None:
    pattern = {
        "resources": [
            "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
            "arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f",
        ]
    }
    event = {
        "resources": [
            "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:x",
            "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
        ]
    }
    assert matches(pattern, event)
    assert not matches(pattern, {"resources": ["arn:other"]})
    assert not matches(pattern, {"resources": []})


def test_nested_event_arrays_are_opened() -> None:
    assert field(["a"], [["b", ["a"]]], [[["c"]]]) == [True, False]
    assert field([{"numeric": [">", 3]}], [1, [2, [4]]]) == [True]


def test_an_array_of_objects_matches_if_one_element_matches_the_whole_object() -> None:
    pattern = {"items": {"kind": ["book"], "price": [{"numeric": ["<", 10]}]}}
    assert matches(pattern, {"items": [{"kind": "pen", "price": 1}, {"kind": "book", "price": 5}]})
    # The conditions do not spread over two elements.
    assert not matches(
        pattern, {"items": [{"kind": "book", "price": 50}, {"kind": "pen", "price": 5}]}
    )
    assert not matches(pattern, {"items": ["book", 5]})


def test_exists_false_under_an_array_of_objects_holds_only_if_no_element_has_the_field() -> None:
    pattern = {"items": {"kind": ["book"], "gift": [{"exists": False}]}}
    assert matches(pattern, {"items": [{"kind": "book"}, {"kind": "pen"}]})
    assert not matches(pattern, {"items": [{"kind": "book"}, {"kind": "pen", "gift": True}]})
    deeper = {"a": {"b": {"c": [{"exists": False}]}, "d": ["1"]}}
    assert matches(deeper, {"a": [{"b": {}}, {"d": "1"}]})
    assert not matches(deeper, {"a": [{"b": {"c": 1}}, {"d": "1"}]})


# ---------------------------------------------------------------------- prefix, suffix, case


def test_prefix() -> None:
    assert field([{"prefix": "2017-10-02"}], "2017-10-02T18:43:48Z", "2017-10-03", 2017) == [
        True,
        False,
        False,
    ]
    assert field([{"prefix": ""}], "", "x", None) == [True, True, False]


def test_prefix_ignoring_case() -> None:
    condition = [{"prefix": {"equals-ignore-case": "EventB"}}]
    assert field(condition, "eventbridge", "EVENTBUS", "EvEnTb", "event", None) == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_suffix_and_suffix_ignoring_case() -> None:
    assert field([{"suffix": ".png"}], "a.png", "a.PNG", "png", 5) == [True, False, False, False]
    condition = [{"suffix": {"equals-ignore-case": ".png"}}]
    assert field(condition, "a.png", "a.PNG", "a.Png", "a.jpg") == [True, True, True, False]


def test_equals_ignore_case() -> None:
    assert field([{"equals-ignore-case": "alice"}], "Alice", "ALICE", "alice", "alicia", 1) == [
        True,
        True,
        True,
        False,
        False,
    ]


# ---------------------------------------------------------------------- anything-but


def test_anything_but_one_string() -> None:
    assert field([{"anything-but": "initializing"}], "running", "initializing", "") == [
        True,
        False,
        True,
    ]


def test_anything_but_a_list_of_strings() -> None:
    condition = [{"anything-but": ["stopped", "overloaded"]}]
    assert field(condition, "running", "stopped", "overloaded") == [True, False, False]


def test_anything_but_numbers() -> None:
    assert field([{"anything-but": 123}], 123, 123.0, 124, "123") == [False, False, True, True]
    condition = [{"anything-but": [100, 500]}]
    assert field(condition, 101, 100.1, 100, 500, [100, 50], [100, 500]) == [
        True,
        True,
        False,
        False,
        True,
        False,
    ]


def test_anything_but_takes_values_of_another_type_as_on_aws() -> None:
    assert field([{"anything-but": "a"}], 5, True, None) == [True, True, True]
    assert field([{"anything-but": 5}], "5", False, None) == [True, True, True]


def test_anything_but_does_not_match_a_missing_field_or_an_object() -> None:
    pattern = compile_pattern({"x": [{"anything-but": "a"}]})
    assert not pattern.matches({})
    assert not pattern.matches({"x": {"y": "b"}})
    assert not pattern.matches({"x": []})


def test_anything_but_a_prefix_or_suffix() -> None:
    assert field([{"anything-but": {"prefix": "us-"}}], "eu-west-1", "us-east-1", 5) == [
        True,
        False,
        True,
    ]
    condition = [{"anything-but": {"prefix": ["us-", "eu-"]}}]
    assert field(condition, "ap-south-1", "us-east-1", "eu-west-1") == [True, False, False]
    assert field([{"anything-but": {"suffix": ".png"}}], "a.jpg", "a.png") == [True, False]
    condition = [{"anything-but": {"suffix": [".png", ".gif"]}}]
    assert field(condition, "a.jpg", "a.gif") == [True, False]


def test_anything_but_ignoring_case() -> None:
    condition: list[Any] = [{"anything-but": {"equals-ignore-case": "initializing"}}]
    assert field(condition, "running", "INITIALIZING", "Initializing") == [True, False, False]
    condition = [{"anything-but": {"equals-ignore-case": ["a", "B"]}}]
    assert field(condition, "b", "A", "c") == [False, False, True]


def test_anything_but_a_wildcard() -> None:
    condition: list[Any] = [{"anything-but": {"wildcard": "*/lib/*"}}]
    assert field(condition, "/usr/bin/x", "/usr/lib/x") == [True, False]
    condition = [{"anything-but": {"wildcard": ["*.png", "*.gif"]}}]
    assert field(condition, "a.jpg", "a.gif") == [True, False]


def test_several_anything_buts_in_one_field_are_ored() -> None:
    condition = [{"anything-but": "aws.ec2"}, {"anything-but": "aws.lambda"}]
    assert field(condition, "aws.ec2", "aws.lambda", "aws.s3") == [True, True, True]


# ---------------------------------------------------------------------- numeric


def test_numeric_operators() -> None:
    values = (-1, 0, 0.5, 5, 5.0000001, 10)
    assert field([{"numeric": ["=", 5]}], *values) == [False, False, False, True, False, False]
    assert field([{"numeric": ["<", 5]}], *values) == [True, True, True, False, False, False]
    assert field([{"numeric": ["<=", 5]}], *values) == [True, True, True, True, False, False]
    assert field([{"numeric": [">", 5]}], *values) == [False, False, False, False, True, True]
    assert field([{"numeric": [">=", 5]}], *values) == [False, False, False, True, True, True]


def test_numeric_ranges() -> None:
    values = (0, 0.1, 5, 5.1, 10)
    assert field([{"numeric": [">", 0, "<=", 5]}], *values) == [False, True, True, False, False]
    assert field([{"numeric": [">=", 0, "<", 5]}], *values) == [True, True, False, False, False]
    assert field([{"numeric": [">", 0, "<", 10]}, {"numeric": ["=", 10]}], *values) == [
        False,
        True,
        True,
        True,
        True,
    ]


def test_numeric_needs_json_numbers() -> None:
    assert field([{"numeric": [">", 0]}], "5", True, None, [], {"a": 1}) == [False] * 5
    assert field([{"numeric": ["=", 301.5]}], 3.015e2, 301.5) == [True, True]


def test_numeric_holds_within_five_billion_either_way() -> None:
    assert field([{"numeric": [">", 0]}], 5e9, 5e9 + 1, 1e20) == [True, False, False]
    assert field([{"numeric": ["<", 0]}], -5e9, -5e9 - 1) == [True, False]
    # Beyond the range a number is not numeric: a numeric anything-but takes it.
    assert field([{"anything-but": [5]}], 1e20) == [True]


# ---------------------------------------------------------------------- exists


def test_exists() -> None:
    present = compile_pattern({"detail": {"x": [{"exists": True}]}})
    absent = compile_pattern({"detail": {"x": [{"exists": False}]}})
    events: list[dict[str, Any]] = [
        {"detail": {"x": "v"}},
        {"detail": {"x": None}},
        {"detail": {"x": ""}},
        {"detail": {"x": [1]}},
        {"detail": {"x": []}},
        {"detail": {"x": {"y": 1}}},  # an object is not a leaf
        {"detail": {}},
        {"detail": "flat"},
        {},
    ]
    assert [present.matches(e) for e in events] == [True] * 4 + [False] * 5
    assert [absent.matches(e) for e in events] == [False] * 4 + [True] * 5


def test_exists_false_ors_with_values() -> None:
    assert field(["a", {"exists": False}], "a", "b") == [True, False]
    assert compile_pattern({"x": ["a", {"exists": False}]}).matches({})


# ---------------------------------------------------------------------- wildcard, cidr


def test_wildcard() -> None:
    condition = [{"wildcard": "dir/*.png"}]
    assert field(condition, "dir/a.png", "dir/.png", "dir/a/b.png", "Dir/a.png", 5) == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert field([{"wildcard": "*"}], "", "anything\nat all", None) == [True, True, False]
    assert field([{"wildcard": "a*b*c"}], "abc", "aXbYc", "acb") == [True, True, False]
    assert field([{"wildcard": "no star"}], "no star", "no stars") == [True, False]
    assert field([{"wildcard": "a.c"}], "a.c", "abc") == [True, False]  # not a regex


def test_wildcard_escapes() -> None:
    assert field([{"wildcard": r"a\*b"}], "a*b", "aXb") == [True, False]
    assert field([{"wildcard": "a\\\\*"}], "a\\", "a\\xyz", "ab") == [True, True, False]


def test_cidr() -> None:
    condition = [{"cidr": "10.0.0.0/24"}]
    assert field(condition, "10.0.0.1", "10.0.0.255", "10.0.1.0", "9.255.255.255") == [
        True,
        True,
        False,
        False,
    ]
    assert field(condition, "not an ip", "10.0.0", 10, "2001:db8::1") == [False] * 4
    condition = [{"cidr": "2001:db8::/32"}]
    assert field(condition, "2001:db8::1", "2001:DB8:ffff::", "2001:db9::1", "10.0.0.1") == [
        True,
        True,
        False,
        False,
    ]


def test_an_ip_address_value_matches_the_same_address_however_written() -> None:
    assert field(["2001:db8::1"], "2001:0db8:0:0:0:0:0:1", "2001:db8::2") == [True, False]
    assert field(["10.0.0.1"], "10.0.0.1", "10.0.0.2") == [True, False]


# ---------------------------------------------------------------------- $or


def test_or_at_the_top() -> None:
    pattern = {"$or": [{"source": ["aws.s3"]}, {"detail": {"state": ["terminated"]}}]}
    assert matches(pattern, EC2)
    assert not matches(pattern, {**EC2, "detail": {"state": "running"}})


def test_or_nested_and_anded_with_its_siblings() -> None:
    pattern = {
        "source": ["aws.ec2"],
        "detail": {
            "$or": [
                {"c-count": [{"numeric": [">", 0, "<=", 5]}]},
                {"d-count": [{"numeric": ["<", 10]}]},
                {"x-limit": [{"numeric": ["=", 3.018e2]}]},
            ]
        },
    }
    assert matches(pattern, EC2)
    assert matches(pattern, {**EC2, "detail": {"x-limit": 301.8}})
    assert not matches(pattern, {**EC2, "detail": {"c-count": 6, "d-count": 10}})
    assert not matches(pattern, {**EC2, "source": "aws.s3"})


def test_or_inside_or() -> None:
    pattern = {
        "$or": [
            {"a": ["1"]},
            {"$or": [{"b": ["2"]}, {"c": ["3"]}]},
        ]
    }
    assert [matches(pattern, e) for e in ({"a": "1"}, {"c": "3"}, {"d": "4"})] == [
        True,
        True,
        False,
    ]


# ---------------------------------------------------------------------- refusals

REFUSED = [
    # Whole pattern.
    ("[1, 2]", "Filter is not an object"),
    ('"plain string"', "Filter is not an object"),
    ("42", "Filter is not an object"),
    ("null", "Filter is not an object"),
    ("{}", "Empty objects are not allowed"),
    # Structure.
    ('{"slug": "some-pipeline"}', '"slug" must be an object or an array'),
    ('{"a": 5}', '"a" must be an object or an array'),
    ('{"a": null}', '"a" must be an object or an array'),
    ('{"a": true}', '"a" must be an object or an array'),
    ('{"a": []}', "Empty arrays are not allowed"),
    ('{"source": ["aws.health"], "detail": {}}', "Empty objects are not allowed"),
    ('{"a": [["b"]]}', "Match value must be String, number, true, false, or null"),
    ('{"a": [{}]}', "Match expression name not found"),
    ('{"a": [{"regex": "x"}]}', "Unrecognized match type regex"),
    ('{"a": [{"contains": "x"}]}', "Unrecognized match type contains"),
    # prefix / suffix / equals-ignore-case.
    ('{"a": [{"prefix": 5}]}', "prefix match pattern must be a string"),
    ('{"a": [{"prefix": ["x"]}]}', "prefix match pattern must be a string"),
    ('{"a": [{"prefix": "x", "suffix": "y"}]}', "Only one key allowed in match expression"),
    ('{"a": [{"prefix": {}}]}', "Prefix expression name not found"),
    ('{"a": [{"prefix": {"wildcard": "x"}}]}', "Unsupported prefix pattern: wildcard"),
    (
        '{"a": [{"prefix": {"equals-ignore-case": 1}}]}',
        "equals-ignore-case match pattern must be a string",
    ),
    (
        '{"a": [{"prefix": {"equals-ignore-case": "x", "b": 1}}]}',
        "Only one key allowed in match expression",
    ),
    ('{"a": [{"suffix": [":created"]}]}', "suffix match pattern must be a string"),
    ('{"a": [{"suffix": {}}]}', "Suffix expression name not found"),
    ('{"a": [{"suffix": {"prefix": "x"}}]}', "Unsupported suffix pattern: prefix"),
    ('{"a": [{"equals-ignore-case": 1}]}', "equals-ignore-case match pattern must be a string"),
    # exists.
    ('{"a": [{"exists": "true"}]}', "exists match pattern must be either true or false."),
    ('{"a": [{"exists": null}]}', "exists match pattern must be either true or false."),
    ('{"a": [{"exists": true, "b": 1}]}', "Only one key allowed in match expression"),
    # anything-but.
    ('{"a": [{"anything-but": null}]}', "Value of anything-but must be an array or single"),
    ('{"a": [{"anything-but": true}]}', "Value of anything-but must be an array or single"),
    ('{"a": [{"anything-but": {}}]}', "Anything-But expression name not found"),
    ('{"a": [{"anything-but": {"numeric": [">", 1]}}]}', "Unsupported anything-but pattern:"),
    ('{"a": [{"anything-but": []}]}', "either all values are number or string, mixed type"),
    ('{"a": [{"anything-but": ["a", 1]}]}', "either all values are number or string, mixed type"),
    ('{"a": [{"anything-but": [null]}]}', "start|null|boolean is not supported."),
    ('{"a": [{"anything-but": [["a"]]}]}', "start|null|boolean is not supported."),
    ('{"a": [{"anything-but": "x", "b": 1}]}', "Too many elements in numeric expression"),
    ('{"a": [{"anything-but": [1e10]}]}', "Value must be between -5.0E9 and 5.0E9, inclusive"),
    ('{"a": [{"anything-but": {"prefix": ""}}]}', "Null prefix/suffix not allowed"),
    ('{"a": [{"anything-but": {"suffix": ["a", ""]}}]}', "Null prefix/suffix not allowed"),
    ('{"a": [{"anything-but": {"prefix": 5}}]}', "prefix/suffix match pattern must be a string"),
    ('{"a": [{"anything-but": {"prefix": true}}]}', "must be an array or single string/number"),
    (
        '{"a": [{"anything-but": {"equals-ignore-case": [1]}}]}',
        "Inside anything-but/equals-ignore-case list, number|start|null|boolean",
    ),
    ('{"a": [{"anything-but": {"wildcard": [1]}}]}', "wildcard match pattern must be a string"),
    ('{"a": [{"anything-but": {"wildcard": "a**"}}]}', "Consecutive wildcard characters at pos"),
    (
        '{"a": [{"anything-but": {"prefix": "x", "suffix": "y"}}]}',
        "Too many elements in numeric expression",
    ),
    # numeric.
    ('{"a": [{"numeric": 5}]}', "Value of numeric must be an array."),
    ('{"a": [{"numeric": ">"}]}', "Value of numeric must be an array."),
    ('{"a": [{"numeric": []}]}', "Invalid member in numeric match: ]"),
    ('{"a": [{"numeric": [5, ">"]}]}', "Invalid member in numeric match: 5"),
    ('{"a": [{"numeric": ["!=", 5]}]}', "Unrecognized numeric range operator: !="),
    ('{"a": [{"numeric": [">"]}]}', "Value of > must be numeric"),
    ('{"a": [{"numeric": [">", "5"]}]}', "Value of > must be numeric"),
    ('{"a": [{"numeric": ["=", true]}]}', "Value of = must be numeric"),
    ('{"a": [{"numeric": ["=", 5, 6]}]}', "Too many elements in numeric expression"),
    ('{"a": [{"numeric": ["<", 5, ">", 1]}]}', "Too many elements in numeric expression"),
    ('{"a": [{"numeric": [">", 0, 5]}]}', "Bad value in numeric range: 5"),
    ('{"a": [{"numeric": [">", 0, ">", 5]}]}', "Bad numeric range operator: >"),
    ('{"a": [{"numeric": [">", 0, "<"]}]}', "Value of < must be numeric"),
    ('{"a": [{"numeric": [">", 0, "<", 5, 6]}]}', "Too many terms in numeric range expression"),
    ('{"a": [{"numeric": [">", 5, "<", 5]}]}', "Bottom must be less than top"),
    ('{"a": [{"numeric": [">", 6, "<=", 5]}]}', "Bottom must be less than top"),
    ('{"a": [{"numeric": ["=", 5e9]}]}', None),
    ('{"a": [{"numeric": ["=", 5000000001]}]}', "Value must be between -5.0E9 and 5.0E9"),
    ('{"a": [{"numeric": [">", 0, "<", 1e10]}]}', "Value must be between -5.0E9 and 5.0E9"),
    ('{"a": [{"numeric": [">", 5e9]}]}', "Bottom must be less than top"),
    ('{"a": [{"numeric": [">", 0], "b": 1}]}', "Too many elements in numeric expression"),
    # wildcard.
    ('{"a": [{"wildcard": 5}]}', "wildcard match pattern must be a string"),
    ('{"a": [{"wildcard": "a**b"}]}', "Consecutive wildcard characters at pos 2"),
    ('{"a": [{"wildcard": "é**"}]}', "Consecutive wildcard characters at pos 3"),
    ('{"a": [{"wildcard": "a\\\\b"}]}', "Invalid escape character at pos 2"),
    ('{"a": [{"wildcard": "ab\\\\"}]}', "Invalid escape character at pos 3"),
    ('{"a": [{"wildcard": "*", "b": 1}]}', "Only one key allowed in match expression"),
    # cidr (AWS names prefix when the block is not a string).
    ('{"a": [{"cidr": 10}]}', "prefix match pattern must be a string"),
    ('{"a": [{"cidr": "10.0.0.0"}]}', "Malformed CIDR, one '/' required"),
    ('{"a": [{"cidr": "10.0.0.0/8/8"}]}', "Malformed CIDR, one '/' required"),
    ('{"a": [{"cidr": "10.0.0.0/x"}]}', "Malformed CIDR, mask bits must be an integer"),
    ('{"a": [{"cidr": "10.0.0.0/-1"}]}', "Malformed CIDR, mask bits must not be negative"),
    ('{"a": [{"cidr": "10.0.0.0/32"}]}', "IPv4 mask bits must be < 32"),
    ('{"a": [{"cidr": "::/128"}]}', "IPv6 mask bits must be < 128"),
    ('{"a": [{"cidr": "example.com/8"}]}', "Nonstandard IP address: example.com"),
    ('{"a": [{"cidr": "300.0.0.0/8"}]}', "Invalid IP address: 300.0.0.0"),
    # $or.
    ('{"$or": {"a": ["1"]}}', "It must be an Array followed with $or."),
    ('{"$or": [{"a": ["1"]}]}', "There must have at least 2 Objects in $or relationship."),
    ('{"$or": []}', "There must have at least 2 Objects in $or relationship."),
    ('{"$or": [{"a": ["1"]}, "b"]}', "Only JSON object is allowed in array of $or relationship."),
    ('{"$or": [{"a": ["1"]}, {}]}', "Empty objects are not allowed"),
    (
        '{"$or": [{"a": ["1"]}, {"prefix": ["x"]}]}',
        "prefix is Ruler reserved fieldName which cannot be used inside $or.",
    ),
    (
        '{"$or": [{"a": ["1"]}, {"b": {"numeric": ["x"]}}]}',
        "numeric is Ruler reserved fieldName which cannot be used inside $or.",
    ),
]


@pytest.mark.parametrize(("pattern", "reason"), REFUSED)
def test_malformed_patterns_are_refused_with_the_reason(pattern: str, reason: str | None) -> None:
    if reason is None:
        compile_pattern(pattern)
        return
    with pytest.raises(InvalidPattern) as caught:
        compile_pattern(pattern)
    assert reason in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("text", ["{not json", "{", "", '{"a": ["x"]', "{'a': ['x']}", "[1, 2"])
def test_malformed_json_is_refused(text: str) -> None:
    with pytest.raises(InvalidPattern) as caught:
        compile_pattern(text)
    assert str(caught.value)


def test_reserved_names_are_fine_outside_or() -> None:
    assert matches(
        {"prefix": ["x"], "numeric": {"=": ["y"]}}, {"prefix": "x", "numeric": {"=": "y"}}
    )


def test_a_parsed_pattern_is_checked_like_text() -> None:
    refused: list[Any] = [[], (1, 2), {}, {1: ["x"]}, {"a": {"b": {}}}, {"a": [{"numeric": [1]}]}]
    for value in refused:
        with pytest.raises(InvalidPattern):
            compile_pattern(value)
    # Tuples stand for arrays.
    assert compile_pattern({"a": ("x", "y")}).matches({"a": "y"})


def test_too_deep_or_too_large_is_refused() -> None:
    deep: dict[str, Any] = {"x": ["v"]}
    for _ in range(150):
        deep = {"n": deep}
    with pytest.raises(InvalidPattern, match="nested more than"):
        compile_pattern(deep)
    with pytest.raises(InvalidPattern, match="nested more than"):
        compile_pattern(json.dumps(deep))
    with pytest.raises(InvalidPattern, match="match values"):
        compile_pattern({f"f{i}": list(range(100)) for i in range(101)})
    ninety_nine: dict[str, Any] = {"x": ["v"]}
    for _ in range(98):
        ninety_nine = {"n": ninety_nine}
    compile_pattern(ninety_nine)


# ---------------------------------------------------------------------- properties

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=False, allow_infinity=False, width=64)
    | st.text(max_size=12)
)
NAMES = st.text(alphabet="abcdef-", min_size=1, max_size=4).filter(lambda name: name != "$or")
EVENTS = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
    max_leaves=12,
)


def _exact_pattern(value: Any) -> Any:
    """A pattern made of the event's own values, where the event has any."""
    if isinstance(value, dict):
        fields = {key: _exact_pattern(inner) for key, inner in value.items()}
        fields = {key: inner for key, inner in fields.items() if inner is not None}
        return fields or None
    if isinstance(value, list):
        leaves = [item for item in value if not isinstance(item, dict | list)]
        return leaves[:1] or None
    return [value]


@settings(database=None, max_examples=300)
@given(st.dictionaries(NAMES, EVENTS, min_size=1, max_size=4))
def test_a_pattern_of_the_events_own_values_matches_it(event: dict[str, Any]) -> None:
    pattern = _exact_pattern(event)
    if pattern is None:
        return
    assert compile_pattern(pattern).matches(event)
    assert compile_pattern(json.dumps(pattern)).matches(event)


@settings(database=None, max_examples=300)
@given(st.text(max_size=6), st.lists(st.text(max_size=6), min_size=1, max_size=4))
def test_anything_but_is_the_complement_of_the_values_for_strings(
    value: str, values: list[str]
) -> None:
    exact = compile_pattern({"x": values}).matches({"x": value})
    but = compile_pattern({"x": [{"anything-but": values}]}).matches({"x": value})
    assert exact != but


@settings(database=None, max_examples=300)
@given(st.text(max_size=8), st.text(max_size=3))
def test_prefix_suffix_and_case_agree_with_python(value: str, part: str) -> None:
    def one(condition: Any) -> bool:
        return compile_pattern({"x": [condition]}).matches({"x": value})

    assert one({"prefix": part}) is value.startswith(part)
    assert one({"suffix": part}) is value.endswith(part)
    assert one({"equals-ignore-case": part}) is (value.lower() == part.lower())
    escaped = part.replace("\\", "\\\\").replace("*", "\\*")
    assert one({"wildcard": escaped}) is (value == part)
    if part:  # "**" is refused
        assert one({"wildcard": f"*{escaped}*"}) is (part in value)


BOUND = st.integers(min_value=-(10**6), max_value=10**6)


@settings(database=None, max_examples=300)
@given(
    st.one_of(BOUND, st.floats(min_value=-(10**6), max_value=10**6)),
    BOUND,
    BOUND,
    st.booleans(),
    st.booleans(),
)
def test_numeric_ranges_agree_with_python(
    value: float, low: int, high: int, low_open: bool, high_open: bool
) -> None:
    if low >= high:
        return
    condition = {"numeric": [">" if low_open else ">=", low, "<" if high_open else "<=", high]}
    expected = (value > low if low_open else value >= low) and (
        value < high if high_open else value <= high
    )
    assert compile_pattern({"x": [condition]}).matches({"x": value}) is expected


EVERY_OPERATOR = compile_pattern(
    {
        "a": ["s", 5, True, None, {"prefix": "p"}, {"suffix": {"equals-ignore-case": "S"}}],
        "b": [{"anything-but": ["x"]}, {"anything-but": {"wildcard": "*y*"}}, {"cidr": "::/1"}],
        "c": {"d": [{"numeric": [">", 0, "<", 9]}, {"anything-but": [1]}, {"exists": False}]},
        "$or": [{"e": [{"exists": True}]}, {"f": [{"equals-ignore-case": "q"}, "1.2.3.4"]}],
    }
)


@settings(database=None, max_examples=500)
@given(st.dictionaries(st.sampled_from("abcdef"), EVENTS, max_size=6))
def test_matching_never_fails_whatever_the_event_holds(event: dict[str, Any]) -> None:
    assert EVERY_OPERATOR.matches(event) in (True, False)
