"""Function and layer names in every form a client may send."""

from __future__ import annotations

import pytest

from lamina.arns import Account, parse_function_ref, parse_layer_arn
from lamina.errors import InvalidParameterValue, ResourceNotFound

ACCOUNT = Account("123456789012", "eu-west-1")


@pytest.mark.parametrize(
    ("value", "name", "qualifier"),
    [
        ("f", "f", None),
        ("f:live", "f", "live"),
        ("f:$LATEST", "f", "$LATEST"),
        ("123456789012:function:f", "f", None),
        ("123456789012:function:f:7", "f", "7"),
        ("arn:aws:lambda:eu-west-1:123456789012:function:f", "f", None),
        ("arn:aws:lambda:eu-west-1:123456789012:function:f:live", "f", "live"),
    ],
)
def test_function_forms(value: str, name: str, qualifier: str | None) -> None:
    ref = parse_function_ref(value, ACCOUNT)
    assert (ref.name, ref.qualifier) == (name, qualifier)


def test_other_account_or_region_is_not_found() -> None:
    with pytest.raises(ResourceNotFound):
        parse_function_ref("arn:aws:lambda:eu-west-1:999999999999:function:f", ACCOUNT)
    with pytest.raises(ResourceNotFound):
        parse_function_ref("arn:aws:lambda:us-east-1:123456789012:function:f", ACCOUNT)


@pytest.mark.parametrize("value", ["bad name", "arn:aws:s3:::bucket", "f:a:b", "x" * 65])
def test_malformed_names_are_refused(value: str) -> None:
    with pytest.raises(InvalidParameterValue):
        parse_function_ref(value, ACCOUNT)


def test_arns_are_built_for_the_account() -> None:
    assert ACCOUNT.function_arn("f", "1") == "arn:aws:lambda:eu-west-1:123456789012:function:f:1"
    assert ACCOUNT.layer_arn("l", 3) == "arn:aws:lambda:eu-west-1:123456789012:layer:l:3"


def test_layer_arns() -> None:
    ref = parse_layer_arn("arn:aws:lambda:eu-west-1:123456789012:layer:deps:4")
    assert ref is not None and (ref.name, ref.version) == ("deps", 4)
    assert parse_layer_arn("arn:aws:lambda:eu-west-1:123456789012:function:f") is None
