"""Policy statements as AWS renders them, and their evaluation."""

from __future__ import annotations

from typing import Any

import pytest

from lamina.control.policies import Caller, Permission, allows, render_statement
from lamina.errors import InvalidParameterValue

FUNCTION = "arn:aws:lambda:us-east-1:000000000000:function:f"
BUCKET = "arn:aws:s3:::my-bucket"


def statement(**fields: Any) -> dict[str, Any]:
    permission = Permission(
        statement_id=fields.pop("sid", "s1"),
        action=fields.pop("action", "lambda:InvokeFunction"),
        principal=fields.pop("principal", "s3.amazonaws.com"),
        **fields,
    )
    return render_statement(permission, FUNCTION)


S3 = Caller(service="s3.amazonaws.com")


@pytest.mark.parametrize(
    ("principal", "rendered"),
    [
        ("*", "*"),
        ("123456789012", {"AWS": "arn:aws:iam::123456789012:root"}),
        ("arn:aws:iam::123456789012:role/r", {"AWS": "arn:aws:iam::123456789012:role/r"}),
        ("events.amazonaws.com", {"Service": "events.amazonaws.com"}),
    ],
)
def test_principal_rendering(principal: str, rendered: Any) -> None:
    assert statement(principal=principal)["Principal"] == rendered


def test_invalid_principal_is_rejected() -> None:
    with pytest.raises(InvalidParameterValue):
        statement(principal="not-a-principal")


def test_statement_layout_and_conditions() -> None:
    rendered = statement(
        source_arn=BUCKET,
        source_account="123456789012",
        principal_org_id="o-abcdefghij",
        function_url_auth_type="NONE",
        event_source_token="tok",
        invoked_via_function_url=True,
    )
    assert list(rendered) == ["Sid", "Effect", "Principal", "Action", "Resource", "Condition"]
    assert rendered["Condition"] == {
        "StringEquals": {
            "AWS:SourceAccount": "123456789012",
            "aws:PrincipalOrgID": "o-abcdefghij",
            "lambda:FunctionUrlAuthType": "NONE",
            "lambda:EventSourceToken": "tok",
        },
        "ArnLike": {"AWS:SourceArn": BUCKET},
        "Bool": {"lambda:InvokedViaFunctionUrl": "true"},
    }
    assert "Condition" not in statement()


def test_service_principal_with_source_conditions() -> None:
    policy = [statement(source_arn=BUCKET, source_account="123456789012")]
    assert allows(
        policy,
        "lambda:InvokeFunction",
        S3,
        source_arn=BUCKET,
        source_account="123456789012",
    )
    # A missing or different source fails the condition.
    assert not allows(policy, "lambda:InvokeFunction", S3, source_account="123456789012")
    assert not allows(
        policy,
        "lambda:InvokeFunction",
        S3,
        source_arn="arn:aws:s3:::other",
        source_account="123456789012",
    )
    assert not allows(
        policy,
        "lambda:InvokeFunction",
        Caller(service="sns.amazonaws.com"),
        source_arn=BUCKET,
        source_account="123456789012",
    )


def test_action_must_match() -> None:
    policy = [statement()]
    assert allows(policy, "lambda:InvokeFunction", S3)
    assert allows(policy, "lambda:invokefunction", S3)
    assert not allows(policy, "lambda:GetFunction", S3)
    assert allows([statement(action="lambda:*")], "lambda:GetFunction", S3)
    assert allows([statement(action="*")], "lambda:InvokeFunctionUrl", S3)


def test_arn_like_wildcards_stay_inside_one_part() -> None:
    policy = [statement(source_arn="arn:aws:events:us-east-1:123456789012:rule/*")]
    rule = "arn:aws:events:us-east-1:123456789012:rule/nightly"
    assert allows(policy, "lambda:InvokeFunction", S3, source_arn=rule)
    wrong_account = "arn:aws:events:us-east-1:999999999999:rule/nightly"
    assert not allows(policy, "lambda:InvokeFunction", S3, source_arn=wrong_account)
    spread = [statement(source_arn="arn:aws:*")]
    assert not allows(spread, "lambda:InvokeFunction", S3, source_arn=rule)


def test_account_principals() -> None:
    policy = [statement(principal="123456789012")]
    assert allows(policy, "lambda:InvokeFunction", Caller(account_id="123456789012"))
    role = Caller(arn="arn:aws:iam::123456789012:role/r")
    assert allows(policy, "lambda:InvokeFunction", role)
    assert not allows(policy, "lambda:InvokeFunction", Caller(account_id="210987654321"))
    assert not allows(policy, "lambda:InvokeFunction", Caller())
    only_role = [statement(principal="arn:aws:iam::123456789012:role/r")]
    assert allows(only_role, "lambda:InvokeFunction", role)
    other_role = Caller(arn="arn:aws:iam::123456789012:role/other")
    assert not allows(only_role, "lambda:InvokeFunction", other_role)


def test_public_function_url() -> None:
    policy = [
        statement(principal="*", action="lambda:InvokeFunctionUrl", function_url_auth_type="NONE")
    ]
    anyone = Caller()
    assert anyone.anonymous
    assert allows(policy, "lambda:InvokeFunctionUrl", anyone, url_auth_type="NONE")
    assert not allows(policy, "lambda:InvokeFunctionUrl", anyone, url_auth_type="AWS_IAM")
    assert not allows(policy, "lambda:InvokeFunctionUrl", anyone)
    assert not allows(policy, "lambda:InvokeFunction", anyone, url_auth_type="NONE")


def test_no_statements_allow_nothing_and_deny_wins() -> None:
    assert not allows([], "lambda:InvokeFunction", S3)
    deny = {**statement(sid="deny"), "Effect": "Deny"}
    assert not allows([statement(), deny], "lambda:InvokeFunction", S3)


def test_unknown_condition_operator_never_grants() -> None:
    policy = [{**statement(), "Condition": {"NumericLessThan": {"aws:SourceAccount": "5"}}}]
    assert not allows(policy, "lambda:InvokeFunction", S3, source_account="1")
