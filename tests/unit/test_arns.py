"""Function and layer names in every form a client may send."""

from __future__ import annotations

import pytest

from lamina.arns import Account, parse_function_ref, parse_layer_arn
from lamina.errors import AccessDenied, InvalidParameterValue, ResourceNotFound

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


def test_another_accounts_function_is_access_denied() -> None:
    with pytest.raises(AccessDenied) as raised:
        parse_function_ref("999999999999:function:f:live", ACCOUNT, "GetFunction")
    assert raised.value.message == (
        "User: arn:aws:iam::123456789012:root is not authorized to perform: "
        "lambda:GetFunction on resource: arn:aws:lambda:eu-west-1:999999999999:function:f:live "
        "because no resource-based policy allows the lambda:GetFunction action"
    )


def test_another_regions_function_is_not_reachable() -> None:
    with pytest.raises(ResourceNotFound) as raised:
        parse_function_ref("arn:aws:lambda:us-east-1:123456789012:function:f", ACCOUNT)
    assert raised.value.message == (
        "Functions from 'us-east-1' are not reachable in this region ('eu-west-1')"
    )


def test_long_names_are_left_to_the_lookup() -> None:
    assert parse_function_ref("x" * 65, ACCOUNT).name == "x" * 65


@pytest.mark.parametrize("value", ["bad name", "arn:aws:s3:::bucket", "f:a:b"])
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
