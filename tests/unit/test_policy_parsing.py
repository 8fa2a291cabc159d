"""Policy validation: what IAM refuses, with AWS's MalformedPolicyDocument texts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lamina.identity.policy import MalformedPolicy, PolicyCache, PolicyKind, parse_policy

IDENTITY = PolicyKind.IDENTITY
RESOURCE = PolicyKind.RESOURCE
TRUST = PolicyKind.TRUST
FUNCTION = "arn:aws:lambda:us-east-1:111122223333:function:f"


def document(*statements: dict[str, Any], version: str | None = "2012-10-17") -> str:
    body: dict[str, Any] = {"Statement": list(statements)}
    if version is not None:
        body["Version"] = version
    return json.dumps(body)


def allow(**fields: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": "lambda:*", "Resource": "*"}
    statement.update(fields)
    return {key: value for key, value in statement.items() if value is not None}


def trust(**fields: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }
    statement.update(fields)
    return {key: value for key, value in statement.items() if value is not None}


def refusal(text: str, kind: PolicyKind = IDENTITY) -> str:
    with pytest.raises(MalformedPolicy) as caught:
        parse_policy(text, kind)
    return caught.value.message


SYNTAX = "Syntax errors in policy."


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '"text"',
        json.dumps({"Version": "2012-10-17"}),
        json.dumps({"Version": "2012-10-17", "Statement": []}),
        json.dumps({"Version": "2012-10-17", "Statement": "x"}),
        json.dumps({"Version": "2012-10-17", "Statement": [allow()], "Extra": 1}),
        json.dumps({"Version": "2012-10-17", "Statement": [allow()], "Id": 5}),
        json.dumps({"Version": "2013-01-01", "Statement": [allow()]}),
        document("statement"),
        document(allow(Effect=None)),
        document(allow(Effect="Maybe")),
        document(allow(Effect=["Allow"])),
        document(allow(Bogus="x")),
        document(allow(NotAction="s3:*")),
        document(allow(NotResource="*")),
        document(allow(Action=5)),
        document(allow(Action=["lambda:*", 5])),
        document(allow(Resource={"a": "b"})),
        document(allow(Sid=5)),
        document(allow(Condition=["x"])),
        document(allow(Condition={"StringEquals": "x"})),
        document(allow(Condition={"StringEquals": {"aws:username": {"a": 1}}})),
        document(allow(Condition={"NoSuchOperator": {"aws:username": "a"}})),
    ],
)
def test_shape_faults_are_syntax_errors(text: str) -> None:
    assert refusal(text) == SYNTAX


def test_an_unknown_operator_with_nothing_under_it_passes() -> None:
    parse_policy(document(allow(Condition={"NoSuchOperator": {}})), IDENTITY)


def test_identity_policies_need_the_current_version() -> None:
    message = "Policy document must be version 2012-10-17 or greater."
    assert refusal(document(allow(), version="2008-10-17")) == message
    assert refusal(document(allow(), version=None)) == message
    # Trust and resource policies still take the old version (and none at all).
    parse_policy(document(trust(), version="2008-10-17"), TRUST)
    parse_policy(document(trust(), version=None), TRUST)


def test_identity_policies_name_no_principal() -> None:
    message = "Policy document should not specify a principal."
    assert refusal(document(allow(Principal="*"))) == message
    assert refusal(document(allow(NotPrincipal={"AWS": "111122223333"}))) == message


def test_effect_is_case_sensitive_to_the_legacy_parser() -> None:
    assert refusal(document(allow(Effect="allow"))) == "The policy failed legacy parsing"


def test_unreadable_dates_fail_legacy_parsing() -> None:
    condition = {"DateGreaterThan": {"aws:CurrentTime": "yesterday"}}
    assert refusal(document(allow(Condition=condition))) == "The policy failed legacy parsing"


def test_sids_are_unique() -> None:
    text = document(allow(Sid="One"), allow(Sid="One"))
    assert refusal(text) == "Statement IDs (SID) in a single policy must be unique."


def test_iam_sids_are_alphanumeric_but_resource_policy_sids_need_not_be() -> None:
    assert refusal(document(allow(Sid="with-dash"))) == (
        "Statement IDs (SID) must be alpha-numeric. "
        "Check that your input satisfies the regular expression [0-9A-Za-z]*"
    )
    resource = allow(Sid="lambda-1_a.b", Principal="*", Resource=FUNCTION)
    parse_policy(document(resource), RESOURCE)


def test_statements_need_actions_and_resources() -> None:
    assert refusal(document(allow(Action=None))) == "Policy statement must contain actions."
    assert refusal(document(allow(Action=[]))) == "Policy statement must contain actions."
    assert refusal(document(allow(Resource=None))) == "Policy statement must contain resources."
    assert refusal(document(allow(Resource=[]))) == "Policy statement must contain resources."


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (
            "InvokeFunction",
            "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.",
        ),
        ("", "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."),
        ("lambda:Invoke:Function", "Actions/Condition can contain only one colon."),
        ("lam bda:InvokeFunction", "Vendor lam bda is not valid"),
    ],
)
def test_action_vendors(action: str, message: str) -> None:
    assert refusal(document(allow(Action=action))) == message


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        ("my-bucket", 'Resource my-bucket must be in ARN format or "*".'),
        (
            "arn:aws-cn:s3:::bucket",
            'Partition "aws-cn" is not valid for resource "arn:aws-cn:s3:::bucket".',
        ),
        ("arn:aws", "Resource vendor must be fully qualified and cannot contain regexes."),
        (
            "arn:aws:lamb*:us-east-1:111122223333:function:f",
            "Resource vendor must be fully qualified and cannot contain regexes.",
        ),
        (
            "arn:aws:iam:us-east-1:111122223333:role/r",
            "IAM resource arn:aws:iam:us-east-1:111122223333:role/r cannot contain region "
            "information.",
        ),
        (
            "arn:aws:s3:us-east-1::bucket",
            "Resource arn:aws:s3:us-east-1::bucket can not contain region information.",
        ),
    ],
)
def test_resource_formats(resource: str, message: str) -> None:
    assert refusal(document(allow(Resource=resource))) == message


def test_iam_resource_paths() -> None:
    message = refusal(document(allow(Resource="arn:aws:iam::111122223333:thing/x")))
    assert message.startswith('IAM resource path must either be "*" or start with user/, ')
    parse_policy(document(allow(Resource="arn:aws:iam::111122223333:role/*")), IDENTITY)


def test_trust_policies_have_no_resource_and_need_a_principal() -> None:
    assert refusal(document(trust(Resource="*")), TRUST) == "Has prohibited field Resource"
    assert refusal(document(trust(NotResource="*")), TRUST) == "Has prohibited field NotResource"
    assert refusal(document(trust(Principal=None)), TRUST) == (
        "Invalid principal in policy: com.amazon.balsa.error.InvalidPolicyException: "
        "The passed in policy has a statement with no principals!"
    )


def test_resource_policies_need_a_principal() -> None:
    text = document(allow(Resource=FUNCTION))
    assert refusal(text, RESOURCE) == "Missing required field Principal"


@pytest.mark.parametrize(
    ("principal", "message"),
    [
        ({"AWS": "not-an-account"}, 'Invalid principal in policy: "AWS":"not-an-account"'),
        ({"AWS": "12345"}, 'Invalid principal in policy: "AWS":"12345"'),
        (
            {"AWS": "arn:aws:iam::111122223333:role/*"},
            'Invalid principal in policy: "AWS":"arn:aws:iam::111122223333:role/*"',
        ),
        ({"Service": "amazonaws.com"}, 'Invalid principal in policy: "SERVICE":"amazonaws.com"'),
        ({"Service": "lambda"}, 'Invalid principal in policy: "SERVICE":"lambda"'),
    ],
)
def test_invalid_principals(principal: Any, message: str) -> None:
    assert refusal(document(trust(Principal=principal)), TRUST) == message


def test_principal_shapes() -> None:
    assert refusal(document(trust(Principal="someone")), TRUST) == SYNTAX
    assert refusal(document(trust(Principal={"Robot": "x"})), TRUST) == SYNTAX
    assert refusal(document(trust(Principal={})), TRUST) == SYNTAX


@pytest.mark.parametrize(
    "principal",
    [
        "*",
        {"AWS": "*"},
        {"AWS": "111122223333"},
        {"AWS": "arn:aws:iam::111122223333:root"},
        {"AWS": ["arn:aws:iam::111122223333:user/a", "arn:aws:iam::111122223333:role/p/r"]},
        {"AWS": "arn:aws:sts::111122223333:assumed-role/r/session"},
        {"Service": ["lambda.amazonaws.com", "logs.us-east-1.amazonaws.com"]},
        {"Federated": "cognito-identity.amazonaws.com"},
    ],
)
def test_valid_principals(principal: Any) -> None:
    parse_policy(document(trust(Principal=principal)), TRUST)


def test_a_single_statement_object_and_an_old_trust_policy_parse() -> None:
    text = json.dumps(
        {
            "Version": "2008-10-17",
            "Statement": {
                "Sid": "",
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            },
        }
    )
    policy = parse_policy(text, TRUST)
    assert policy.version == "2008-10-17"
    assert len(policy.statements) == 1
    assert policy.statements[0].sid is None


def test_lambda_rendered_function_policies_parse() -> None:
    statement = {
        "Sid": "FunctionURLAllowPublicAccess",
        "Effect": "Allow",
        "Principal": "*",
        "Action": "lambda:InvokeFunctionUrl",
        "Resource": FUNCTION,
        "Condition": {
            "StringEquals": {"lambda:FunctionUrlAuthType": "NONE"},
            "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::bucket"},
            "Bool": {"lambda:InvokedViaFunctionUrl": "true"},
        },
    }
    text = json.dumps({"Version": "2012-10-17", "Id": "default", "Statement": [statement]})
    policy = parse_policy(text, RESOURCE)
    assert policy.id == "default"


def test_json_booleans_and_numbers_are_read_as_text() -> None:
    condition = {"Bool": {"aws:SecureTransport": True}, "NumericLessThan": {"s3:max-keys": 10}}
    parse_policy(document(allow(Condition=condition)), IDENTITY)


def test_text_that_is_not_json() -> None:
    assert refusal("{", IDENTITY) == SYNTAX
    assert refusal("{", TRUST) == "This policy contains invalid Json"
    assert refusal("{", RESOURCE) == "This policy contains invalid Json"
    # Well-formed JSON of the wrong shape is still a syntax error everywhere.
    assert refusal("[]", TRUST) == SYNTAX


@pytest.mark.parametrize(
    "action",
    [
        "sts:AssumeRole",
        "sts:assumerole",
        ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
        "sts:AssumeRoleWithWebIdentity",
        "sts:AssumeRoleWithSAML",
        "*",
    ],
)
def test_trust_policy_actions(action: Any) -> None:
    parse_policy(document(trust(Action=action)), TRUST)


@pytest.mark.parametrize("action", ["lambda:InvokeFunction", "sts:*", "sts:GetCallerIdentity"])
def test_trust_policies_grant_only_assume_role_actions(action: str) -> None:
    message = "AssumeRole policy may only specify STS AssumeRole actions."
    assert refusal(document(trust(Action=action)), TRUST) == message


def test_policy_arn_is_kept() -> None:
    arn = "arn:aws:iam::111122223333:policy/p"
    assert parse_policy(document(allow()), IDENTITY, arn=arn).arn == arn


def test_named_principals_lists_users_roles_and_sessions() -> None:
    principals = {
        "AWS": [
            "111122223333",
            "arn:aws:iam::111122223333:root",
            "arn:aws:iam::111122223333:role/r",
            "arn:aws:iam::111122223333:user/u",
        ],
        "Service": "lambda.amazonaws.com",
    }
    policy = parse_policy(document(trust(Principal=principals)), TRUST)
    assert policy.named_principals() == {
        "arn:aws:iam::111122223333:role/r",
        "arn:aws:iam::111122223333:user/u",
    }


def test_the_cache_compiles_each_text_once_and_forgets_the_oldest() -> None:
    cache = PolicyCache(max_entries=2)
    first = document(allow(Sid="A"))
    assert cache.get(first, IDENTITY) is cache.get(first, IDENTITY)
    cache.get(document(allow(Sid="B")), IDENTITY)
    cache.get(document(allow(Sid="C")), IDENTITY)
    assert len(cache) == 2
    with pytest.raises(MalformedPolicy):
        cache.get("{", IDENTITY)
    assert len(cache) == 2
