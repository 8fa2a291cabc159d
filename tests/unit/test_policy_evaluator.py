"""Policy evaluation as AWS documents it: concrete cases, then random policies checked against
a deliberately naive reference implementation of the documented decision table."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from lamina.identity.policy import (
    AuthRequest,
    Decision,
    Denial,
    Policy,
    PolicyKind,
    denial_message,
    evaluate,
    parse_policy,
)

A = "111122223333"
B = "444455556666"
ALICE = f"arn:aws:iam::{A}:user/alice"
BOB = f"arn:aws:iam::{B}:user/bob"
ROLE = f"arn:aws:iam::{A}:role/worker"
SESSION = f"arn:aws:sts::{A}:assumed-role/worker/job-1"
ROOT_A = f"arn:aws:iam::{A}:root"
ROOT_B = f"arn:aws:iam::{B}:root"
FN = f"arn:aws:lambda:us-east-1:{A}:function:orders"
FN_B = f"arn:aws:lambda:us-east-1:{B}:function:orders"
INVOKE = "lambda:InvokeFunction"


def identity(*statements: dict[str, Any], arn: str | None = None) -> Policy:
    text = json.dumps({"Version": "2012-10-17", "Statement": list(statements)})
    return parse_policy(text, PolicyKind.IDENTITY, arn=arn)


def resource_policy(*statements: dict[str, Any]) -> Policy:
    text = json.dumps({"Version": "2012-10-17", "Statement": list(statements)})
    return parse_policy(text, PolicyKind.RESOURCE)


def trust_policy(*statements: dict[str, Any]) -> Policy:
    text = json.dumps({"Version": "2012-10-17", "Statement": list(statements)})
    return parse_policy(text, PolicyKind.TRUST)


def allow(action: Any = INVOKE, resource: Any = "*", **more: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **more}


def deny(action: Any = INVOKE, resource: Any = "*", **more: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **more}


def account_of(principal: str) -> str:
    return principal.split(":")[4] if principal.startswith("arn:") else ""


def request(
    principal: str = ALICE,
    action: str = INVOKE,
    resource: str = FN,
    context: Mapping[str, str | Sequence[str]] | None = None,
) -> AuthRequest:
    return AuthRequest(
        principal_arn=principal,
        principal_account=account_of(principal),
        action=action,
        resource=resource,
        resource_account=account_of(resource),
        context=context or {},
    )


ALLOWED = Decision(True)


def denied(denial: Denial) -> Decision:
    return Decision(False, denial)


# --- same account -------------------------------------------------------------------------


def test_nothing_allows_by_default() -> None:
    assert evaluate(request(), [], None) == denied(Denial.NO_IDENTITY_ALLOW)


def test_an_identity_policy_allows() -> None:
    assert evaluate(request(), [identity(allow())], None) == ALLOWED


def test_a_resource_policy_naming_the_user_allows_without_an_identity_policy() -> None:
    policy = resource_policy(allow(Principal={"AWS": ALICE}, resource=FN))
    assert evaluate(request(), [], policy) == ALLOWED


def test_a_resource_policy_naming_only_the_account_delegates_to_identity_policies() -> None:
    policy = resource_policy(allow(Principal={"AWS": A}, resource=FN))
    assert evaluate(request(), [], policy) == denied(Denial.NO_IDENTITY_ALLOW)
    assert evaluate(request(), [identity(allow())], policy) == ALLOWED


def test_a_public_resource_policy_allows_anyone() -> None:
    policy = resource_policy(allow(Principal="*", resource=FN))
    assert evaluate(request(BOB), [], policy) == denied(Denial.NO_IDENTITY_ALLOW)
    assert evaluate(request(ALICE), [], policy) == ALLOWED


def test_an_explicit_deny_in_an_identity_policy_wins() -> None:
    policies = [identity(allow("lambda:*")), identity(deny())]
    resource = resource_policy(allow(Principal={"AWS": ALICE}, resource=FN))
    assert evaluate(request(), policies, resource) == denied(Denial.IDENTITY_DENY)


def test_an_explicit_deny_in_a_resource_policy_wins() -> None:
    resource = resource_policy(deny(Principal="*", resource=FN))
    assert evaluate(request(), [identity(allow())], resource) == denied(Denial.RESOURCE_DENY)


def test_a_deny_for_another_principal_does_not_apply() -> None:
    resource = resource_policy(deny(Principal={"AWS": BOB}, resource=FN))
    assert evaluate(request(), [identity(allow())], resource) == ALLOWED


# --- cross account --------------------------------------------------------------------------


def test_cross_account_needs_both_sides() -> None:
    call = request(BOB, resource=FN)
    grant = resource_policy(allow(Principal={"AWS": B}, resource=FN))
    assert evaluate(call, [identity(allow())], None) == denied(Denial.NO_RESOURCE_ALLOW)
    assert evaluate(call, [], grant) == denied(Denial.NO_IDENTITY_ALLOW)
    assert evaluate(call, [identity(allow())], grant) == ALLOWED


def test_cross_account_a_resource_policy_naming_the_user_still_needs_their_identity() -> None:
    call = request(BOB, resource=FN)
    grant = resource_policy(allow(Principal={"AWS": BOB}, resource=FN))
    assert evaluate(call, [], grant) == denied(Denial.NO_IDENTITY_ALLOW)
    assert evaluate(call, [identity(allow())], grant) == ALLOWED


def test_cross_account_grant_to_another_account_does_not_apply() -> None:
    call = request(BOB, resource=FN)
    grant = resource_policy(allow(Principal={"AWS": "999999999999"}, resource=FN))
    assert evaluate(call, [identity(allow())], grant) == denied(Denial.NO_RESOURCE_ALLOW)


# --- sessions -----------------------------------------------------------------------------


def test_a_session_policy_narrows_the_identity_side() -> None:
    call = request(SESSION)
    session = identity(allow("lambda:GetFunction"))
    assert evaluate(call, [identity(allow("lambda:*"))], None, session) == denied(
        Denial.NO_SESSION_ALLOW
    )
    wider = identity(allow("lambda:*"))
    assert evaluate(call, [identity(allow("lambda:*"))], None, wider) == ALLOWED
    # A session policy grants nothing the identity policies do not.
    assert evaluate(call, [], None, wider) == denied(Denial.NO_IDENTITY_ALLOW)


def test_an_explicit_deny_in_a_session_policy() -> None:
    call = request(SESSION)
    session = identity(deny())
    assert evaluate(call, [identity(allow())], None, session) == denied(Denial.SESSION_DENY)


def test_a_resource_policy_naming_the_session_is_not_narrowed_by_the_session_policy() -> None:
    call = request(SESSION)
    session = identity(allow("lambda:GetFunction"))
    by_session = resource_policy(allow(Principal={"AWS": SESSION}, resource=FN))
    by_role = resource_policy(allow(Principal={"AWS": ROLE}, resource=FN))
    assert evaluate(call, [], by_session, session) == ALLOWED
    assert evaluate(call, [], by_role, session) == denied(Denial.NO_SESSION_ALLOW)
    assert evaluate(call, [], by_role) == ALLOWED


def test_a_role_with_a_path_matches_its_sessions() -> None:
    policy = resource_policy(allow(Principal={"AWS": f"arn:aws:iam::{A}:role/team/worker"}))
    assert evaluate(request(SESSION), [], policy) == ALLOWED


# --- root ---------------------------------------------------------------------------------


def test_root_may_do_everything_in_its_account_but_what_is_explicitly_denied() -> None:
    assert evaluate(request(ROOT_A), [], None, root=True) == ALLOWED
    deny_all = resource_policy(deny("*", Principal="*", resource="*"))
    assert evaluate(request(ROOT_A), [], deny_all, root=True) == denied(Denial.RESOURCE_DENY)


def test_a_root_arn_is_root_without_saying_so() -> None:
    assert evaluate(request(ROOT_A), [], None) == ALLOWED


def test_root_of_another_account_needs_the_resource_policy() -> None:
    call = request(ROOT_B, resource=FN)
    assert evaluate(call, [], None, root=True) == denied(Denial.NO_RESOURCE_ALLOW)
    grant = resource_policy(allow(Principal={"AWS": ROOT_B}, resource=FN))
    assert evaluate(call, [], grant, root=True) == ALLOWED


# --- trust policies and services ------------------------------------------------------------


def test_lambda_may_assume_a_role_that_trusts_it() -> None:
    trust = trust_policy(
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    )
    lambda_call = AuthRequest("lambda.amazonaws.com", "", "sts:AssumeRole", ROLE, A)
    assert evaluate(lambda_call, [], trust) == ALLOWED
    events_call = AuthRequest("events.amazonaws.com", "", "sts:AssumeRole", ROLE, A)
    assert evaluate(events_call, [], trust) == denied(Denial.NO_RESOURCE_ALLOW)
    assert evaluate(request(ALICE, "sts:AssumeRole", ROLE), [], trust) == denied(
        Denial.NO_IDENTITY_ALLOW
    )


def test_assume_role_across_accounts_needs_the_callers_permission_too() -> None:
    trust = trust_policy(
        {"Effect": "Allow", "Principal": {"AWS": ROOT_B}, "Action": "sts:AssumeRole"}
    )
    call = request(BOB, "sts:AssumeRole", ROLE)
    assert evaluate(call, [], trust) == denied(Denial.NO_IDENTITY_ALLOW)
    assert evaluate(call, [identity(allow("sts:AssumeRole"))], trust) == ALLOWED


def test_not_principal_deny_spares_only_principals_listed_with_their_account() -> None:
    only_user = resource_policy(
        deny(NotPrincipal={"AWS": ALICE}, resource=FN),
        allow(Principal="*", resource=FN),
    )
    # The account (one of the principals the caller stands for) is not listed, so the deny
    # still applies, as AWS documents.
    assert evaluate(request(ALICE), [], only_user) == denied(Denial.RESOURCE_DENY)
    with_account = resource_policy(
        deny(NotPrincipal={"AWS": [ALICE, ROOT_A]}, resource=FN),
        allow(Principal="*", resource=FN),
    )
    assert evaluate(request(ALICE), [], with_account) == ALLOWED
    other = f"arn:aws:iam::{A}:user/carol"
    assert evaluate(request(other), [], with_account) == denied(Denial.RESOURCE_DENY)


def test_not_principal_for_a_session_lists_the_session_its_role_and_account() -> None:
    spared = resource_policy(
        deny(NotPrincipal={"AWS": [SESSION, ROLE, A]}, resource=FN),
        allow(Principal="*", resource=FN),
    )
    assert evaluate(request(SESSION), [], spared) == ALLOWED
    partly = resource_policy(
        deny(NotPrincipal={"AWS": [SESSION, A]}, resource=FN),
        allow(Principal="*", resource=FN),
    )
    assert evaluate(request(SESSION), [], partly) == denied(Denial.RESOURCE_DENY)


# --- actions and resources ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "action", "matches"),
    [
        ("lambda:InvokeFunction", "lambda:InvokeFunction", True),
        ("lambda:invokefunction", "lambda:InvokeFunction", True),
        ("LAMBDA:Invoke*", "lambda:InvokeFunction", True),
        ("lambda:*", "lambda:GetFunction", True),
        ("*", "s3:GetObject", True),
        ("lambda:Get*", "lambda:InvokeFunction", False),
        ("lambda:Get?unction", "lambda:GetFunction", True),
        ("lambda:Get?unction", "lambda:GetFunctionConfiguration", False),
        ("lambda:*Function*", "lambda:GetFunctionConfiguration", True),
        ("s3:*", "lambda:InvokeFunction", False),
    ],
)
def test_action_wildcards(pattern: str, action: str, matches: bool) -> None:
    assert evaluate(request(action=action), [identity(allow(pattern))], None).allowed is matches


@pytest.mark.parametrize(
    ("pattern", "resource", "matches"),
    [
        (FN, FN, True),
        (FN, FN + ":prod", False),
        (FN + "*", FN + ":prod", True),
        (FN + ":*", FN + ":prod", True),
        (FN + ":*", FN, False),
        (f"arn:aws:lambda:*:{A}:function:*", FN, True),
        ("arn:aws:lambda:*:*:function:orders", FN_B, True),
        (f"arn:aws:lambda:us-east-1:{A}:function:ORDERS", FN, False),
        ("arn:aws:lambda:*", FN, True),
        # A wildcard inside one of the first five components stays inside it.
        ("arn:aws:lambda:us-*:function:orders", FN, False),
        (f"arn:aws:lambda:us-east-?:{A}:function:orders", FN, True),
        ("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/a/b:c", True),
    ],
)
def test_resource_wildcards(pattern: str, resource: str, matches: bool) -> None:
    call = AuthRequest(ALICE, A, INVOKE, resource, "")
    assert evaluate(call, [identity(allow(resource=pattern))], None).allowed is matches


def test_not_action_and_not_resource() -> None:
    everything_but_delete = identity(
        {"Effect": "Allow", "NotAction": "lambda:Delete*", "Resource": "*"}
    )
    assert evaluate(request(), [everything_but_delete], None).allowed
    assert not evaluate(request(action="lambda:DeleteFunction"), [everything_but_delete], None)
    not_orders = identity({"Effect": "Allow", "Action": "lambda:*", "NotResource": FN})
    assert not evaluate(request(), [not_orders], None)
    assert evaluate(request(resource=FN + "2"), [not_orders], None)
    deny_others = identity(
        allow("lambda:*"), {"Effect": "Deny", "Action": "lambda:*", "NotResource": FN}
    )
    assert evaluate(request(), [deny_others], None).allowed
    assert evaluate(request(resource=FN + "2"), [deny_others], None) == denied(Denial.IDENTITY_DENY)


def test_policy_variables_in_resources() -> None:
    own = identity(allow("lambda:*", f"arn:aws:lambda:*:{A}:function:${{aws:username}}-*"))
    mine = f"arn:aws:lambda:us-east-1:{A}:function:alice-api"
    theirs = f"arn:aws:lambda:us-east-1:{A}:function:bob-api"
    context = {"aws:username": "alice"}
    assert evaluate(request(resource=mine, context=context), [own], None).allowed
    assert not evaluate(request(resource=theirs, context=context), [own], None).allowed
    # Without the key the pattern matches nothing; a default stands in for it.
    assert not evaluate(request(resource=mine), [own], None).allowed
    defaulted = identity(
        allow("lambda:*", f"arn:aws:lambda:*:{A}:function:${{aws:username, 'alice'}}-*")
    )
    assert evaluate(request(resource=mine), [defaulted], None).allowed
    # A value's `*` is a literal star, never a wildcard.
    star = {"aws:username": "*"}
    assert not evaluate(request(resource=mine, context=star), [own], None).allowed


def test_policy_variables_are_literal_in_old_policies() -> None:
    text = json.dumps(
        {
            "Version": "2008-10-17",
            "Statement": [
                allow(
                    "lambda:*",
                    "arn:aws:lambda:*:*:function:${aws:username}",
                    Principal="*",
                )
            ],
        }
    )
    policy = parse_policy(text, PolicyKind.RESOURCE)
    literal = f"arn:aws:lambda:us-east-1:{A}:function:${{aws:username}}"
    call = request(resource=literal, context={"aws:username": "alice"})
    assert evaluate(call, [], policy).allowed


def test_literal_escapes() -> None:
    policy = identity(allow("lambda:*", f"arn:aws:lambda:*:{A}:function:a${{*}}b"))
    assert evaluate(request(resource=f"arn:aws:lambda:us-east-1:{A}:function:a*b"), [policy], None)
    assert not evaluate(
        request(resource=f"arn:aws:lambda:us-east-1:{A}:function:axb"), [policy], None
    )


# --- conditions ---------------------------------------------------------------------------


def decide(condition: dict[str, Any], context: Mapping[str, str | Sequence[str]]) -> bool:
    policy = identity(allow(Condition=condition))
    return evaluate(request(context=context), [policy], None).allowed


@pytest.mark.parametrize(
    ("condition", "context", "allowed"),
    [
        ({"StringEquals": {"aws:SourceAccount": A}}, {"aws:SourceAccount": A}, True),
        ({"StringEquals": {"aws:SourceAccount": A}}, {"aws:SourceAccount": B}, False),
        ({"StringEquals": {"aws:SourceAccount": A}}, {}, False),
        ({"StringEquals": {"aws:SourceAccount": [A, B]}}, {"aws:SourceAccount": B}, True),
        # Keys match case-insensitively, values case-sensitively.
        ({"StringEquals": {"AWS:SOURCEACCOUNT": A}}, {"aws:sourceaccount": A}, True),
        ({"StringEquals": {"aws:username": "Alice"}}, {"aws:username": "alice"}, False),
        ({"StringEqualsIgnoreCase": {"aws:username": "Alice"}}, {"aws:username": "ALICE"}, True),
        ({"StringNotEquals": {"aws:username": "alice"}}, {"aws:username": "bob"}, True),
        ({"StringNotEquals": {"aws:username": "alice"}}, {"aws:username": "alice"}, False),
        # A negated operator holds when the key is absent.
        ({"StringNotEquals": {"aws:username": "alice"}}, {}, True),
        # Several values of a negated operator: NOR.
        ({"StringNotEquals": {"aws:username": ["a", "b"]}}, {"aws:username": "b"}, False),
        (
            {"StringNotEqualsIgnoreCase": {"aws:username": "ALICE"}},
            {"aws:username": "alice"},
            False,
        ),
        ({"StringLike": {"aws:username": "al*"}}, {"aws:username": "alice"}, True),
        ({"StringLike": {"aws:username": "al?"}}, {"aws:username": "alice"}, False),
        ({"StringNotLike": {"aws:username": "al*"}}, {"aws:username": "bob"}, True),
        ({"StringNotLike": {"aws:username": "al*"}}, {}, True),
        (
            {"ArnLike": {"aws:SourceArn": "arn:aws:s3:::bucket-*"}},
            {"aws:SourceArn": "arn:aws:s3:::bucket-1"},
            True,
        ),
        (
            {"ArnEquals": {"aws:SourceArn": f"arn:aws:sqs:*:{A}:*"}},
            {"aws:SourceArn": f"arn:aws:sqs:us-east-1:{A}:queue"},
            True,
        ),
        (
            {"ArnLike": {"aws:SourceArn": f"arn:aws:sqs:*:{A}:*"}},
            {"aws:SourceArn": f"arn:aws:sqs:us-east-1:{B}:queue"},
            False,
        ),
        ({"ArnLike": {"aws:SourceArn": "*"}}, {"aws:SourceArn": "not-an-arn"}, False),
        (
            {"ArnNotLike": {"aws:SourceArn": f"arn:aws:sqs:*:{A}:*"}},
            {"aws:SourceArn": f"arn:aws:sqs:us-east-1:{B}:queue"},
            True,
        ),
        ({"ArnNotEquals": {"aws:SourceArn": f"arn:aws:sqs:*:{A}:*"}}, {}, True),
        ({"Bool": {"aws:SecureTransport": "true"}}, {"aws:SecureTransport": "true"}, True),
        ({"Bool": {"aws:SecureTransport": True}}, {"aws:SecureTransport": "TRUE"}, True),
        ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": "true"}, False),
        ({"Bool": {"aws:SecureTransport": "false"}}, {}, False),
        ({"BoolIfExists": {"aws:SecureTransport": "false"}}, {}, True),
        ({"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": "9"}, True),
        ({"NumericLessThan": {"s3:max-keys": 10}}, {"s3:max-keys": "10"}, False),
        ({"NumericLessThanEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "10"}, True),
        ({"NumericGreaterThan": {"s3:max-keys": "10"}}, {"s3:max-keys": "10.5"}, True),
        ({"NumericGreaterThanEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "9"}, False),
        ({"NumericEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "10.0"}, True),
        ({"NumericNotEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "11"}, True),
        ({"NumericEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "ten"}, False),
        (
            {"DateGreaterThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}},
            {"aws:CurrentTime": "2026-06-01T12:00:00Z"},
            True,
        ),
        (
            {"DateLessThan": {"aws:CurrentTime": "2026-01-01"}},
            {"aws:CurrentTime": "2026-06-01T12:00:00Z"},
            False,
        ),
        (
            {"DateLessThanEquals": {"aws:EpochTime": "1767225600"}},
            {"aws:EpochTime": "2026-01-01T00:00:00+00:00"},
            True,
        ),
        (
            {"DateEquals": {"aws:CurrentTime": "2026-01-01T01:00:00+01:00"}},
            {"aws:CurrentTime": "2026-01-01T00:00:00Z"},
            True,
        ),
        (
            {"DateNotEquals": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}},
            {"aws:CurrentTime": "2026-01-02T00:00:00Z"},
            True,
        ),
        (
            {"DateGreaterThanEquals": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}},
            {"aws:CurrentTime": "2026-01-01T00:00:00Z"},
            True,
        ),
        ({"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, {"aws:SourceIp": "203.0.113.9"}, True),
        (
            {"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}},
            {"aws:SourceIp": "198.51.100.1"},
            False,
        ),
        ({"IpAddress": {"aws:SourceIp": "2001:db8::/32"}}, {"aws:SourceIp": "2001:db8::1"}, True),
        ({"IpAddress": {"aws:SourceIp": "203.0.113.7"}}, {"aws:SourceIp": "203.0.113.7"}, True),
        ({"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, {"aws:SourceIp": "10.0.0.1"}, True),
        ({"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, {}, True),
        ({"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, {"aws:SourceIp": "junk"}, False),
        ({"BinaryEquals": {"key:blob": "QmluYXJ5"}}, {"key:blob": "QmluYXJ5"}, True),
        ({"Null": {"aws:TokenIssueTime": "true"}}, {}, True),
        ({"Null": {"aws:TokenIssueTime": "true"}}, {"aws:TokenIssueTime": "x"}, False),
        ({"Null": {"aws:TokenIssueTime": "false"}}, {"aws:TokenIssueTime": "x"}, True),
        ({"StringEqualsIfExists": {"aws:username": "alice"}}, {}, True),
        ({"StringEqualsIfExists": {"aws:username": "alice"}}, {"aws:username": "bob"}, False),
        ({"ArnLikeIfExists": {"aws:SourceArn": "arn:aws:s3:::b"}}, {}, True),
        # Two operators, two keys: everything must hold.
        (
            {
                "StringEquals": {"aws:username": "alice", "aws:SourceAccount": A},
                "Bool": {"aws:SecureTransport": "true"},
            },
            {"aws:username": "alice", "aws:SourceAccount": A, "aws:SecureTransport": "true"},
            True,
        ),
        (
            {
                "StringEquals": {"aws:username": "alice", "aws:SourceAccount": A},
                "Bool": {"aws:SecureTransport": "true"},
            },
            {"aws:username": "alice", "aws:SourceAccount": A, "aws:SecureTransport": "false"},
            False,
        ),
    ],
)
def test_condition_operators(
    condition: dict[str, Any], context: Mapping[str, str | Sequence[str]], allowed: bool
) -> None:
    assert decide(condition, context) is allowed


TAGS = "aws:TagKeys"


@pytest.mark.parametrize(
    ("condition", "values", "allowed"),
    [
        ({"ForAnyValue:StringEquals": {TAGS: ["a", "b"]}}, ["b", "z"], True),
        ({"ForAnyValue:StringEquals": {TAGS: ["a", "b"]}}, ["y", "z"], False),
        ({"ForAnyValue:StringEquals": {TAGS: ["a", "b"]}}, None, False),
        ({"ForAnyValue:StringEquals": {TAGS: ["a", "b"]}}, [], False),
        ({"ForAllValues:StringEquals": {TAGS: ["a", "b"]}}, ["a", "b"], True),
        ({"ForAllValues:StringEquals": {TAGS: ["a", "b"]}}, ["a", "z"], False),
        # ForAllValues holds for an absent or empty key, as AWS warns.
        ({"ForAllValues:StringEquals": {TAGS: ["a", "b"]}}, None, True),
        ({"ForAllValues:StringEquals": {TAGS: ["a", "b"]}}, [], True),
        ({"ForAllValues:StringLike": {TAGS: ["team-*"]}}, ["team-a", "team-b"], True),
        ({"ForAnyValue:StringNotEquals": {TAGS: ["a"]}}, ["a", "b"], True),
        ({"ForAnyValue:StringNotEquals": {TAGS: ["a"]}}, ["a"], False),
        ({"ForAllValues:StringNotEquals": {TAGS: ["a"]}}, ["b", "c"], True),
        ({"ForAllValues:StringNotEquals": {TAGS: ["a"]}}, ["a", "c"], False),
        ({"ForAnyValue:StringEqualsIfExists": {TAGS: ["a"]}}, None, True),
        # An unqualified operator on a multivalued key matches any value.
        ({"StringEquals": {TAGS: "a"}}, ["a", "b"], True),
        ({"StringNotEquals": {TAGS: "a"}}, ["a", "b"], False),
    ],
)
def test_set_operators(condition: dict[str, Any], values: list[str] | None, allowed: bool) -> None:
    context: dict[str, str | Sequence[str]] = {} if values is None else {TAGS: values}
    assert decide(condition, context) is allowed


def test_principal_keys_are_known_without_a_context() -> None:
    condition = {
        "StringEquals": {"aws:PrincipalAccount": A},
        "ArnEquals": {"aws:PrincipalArn": ALICE},
    }
    assert decide(condition, {})
    role_only = {"ArnLike": {"aws:PrincipalArn": ROLE}}
    policy = identity(allow(Condition=role_only))
    assert evaluate(request(SESSION), [policy], None).allowed
    # The caller's own context wins (a role with a path).
    pathed = f"arn:aws:iam::{A}:role/team/worker"
    call = request(SESSION, context={"aws:PrincipalArn": pathed})
    assert not evaluate(call, [policy], None).allowed


def test_policy_variables_in_condition_values() -> None:
    condition = {"StringEquals": {"aws:PrincipalTag/team": "${aws:username}"}}
    assert decide(condition, {"aws:username": "alice", "aws:PrincipalTag/team": "alice"})
    assert not decide(condition, {"aws:username": "alice", "aws:PrincipalTag/team": "bob"})
    assert not decide(condition, {"aws:PrincipalTag/team": "bob"})
    like = {"StringLike": {"s3:prefix": "home/${aws:username}/*"}}
    assert decide(like, {"aws:username": "alice", "s3:prefix": "home/alice/docs"})
    assert not decide(like, {"aws:username": "alice", "s3:prefix": "home/bob/docs"})


def test_lambda_source_arn_conditions_in_a_function_policy() -> None:
    policy = resource_policy(
        allow(
            Principal={"Service": "s3.amazonaws.com"},
            resource=FN,
            Condition={
                "StringEquals": {"AWS:SourceAccount": A},
                "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::uploads"},
            },
        )
    )
    context = {"aws:SourceAccount": A, "aws:SourceArn": "arn:aws:s3:::uploads"}
    s3 = AuthRequest("s3.amazonaws.com", "", INVOKE, FN, A, context)
    assert evaluate(s3, [], policy) == ALLOWED
    other = AuthRequest(
        "s3.amazonaws.com", "", INVOKE, FN, A, {**context, "aws:SourceArn": "arn:aws:s3:::x"}
    )
    assert evaluate(other, [], policy) == denied(Denial.NO_RESOURCE_ALLOW)


# --- messages -----------------------------------------------------------------------------


def test_denial_sentences() -> None:
    def sentence(decision: Decision) -> str:
        return denial_message(ALICE, INVOKE, FN, decision)

    prefix = f"User: {ALICE} is not authorized to perform: {INVOKE} on resource: {FN} "
    assert sentence(evaluate(request(), [], None)) == (
        prefix + "because no identity-based policy allows the lambda:InvokeFunction action"
    )
    assert sentence(denied(Denial.NO_RESOURCE_ALLOW)) == (
        prefix + "because no resource-based policy allows the lambda:InvokeFunction action"
    )
    assert sentence(denied(Denial.NO_SESSION_ALLOW)) == (
        prefix + "because no session policy allows the lambda:InvokeFunction action"
    )
    assert sentence(denied(Denial.IDENTITY_DENY)) == (
        prefix + "with an explicit deny in an identity-based policy"
    )
    assert sentence(denied(Denial.RESOURCE_DENY)) == (
        prefix + "with an explicit deny in a resource-based policy"
    )


def test_a_denying_managed_policy_is_named_to_its_own_account() -> None:
    arn = f"arn:aws:iam::{A}:policy/NoInvoke"
    policy = identity(deny(), arn=arn)
    decision = evaluate(request(), [policy], None)
    assert decision == Decision(False, Denial.IDENTITY_DENY, arn)
    assert denial_message(ALICE, INVOKE, FN, decision).endswith(
        f"with an explicit deny in an identity-based policy: {arn}"
    )
    across = evaluate(request(BOB, resource=FN), [policy], None)
    assert across == denied(Denial.IDENTITY_DENY)


def test_decisions_are_truthy_when_allowed() -> None:
    assert evaluate(request(), [identity(allow())], None)
    assert not evaluate(request(), [], None)


# --- random policies against a naive reference ----------------------------------------------
#
# The reference below re-states the documented rules as directly as possible: wildcard
# matching by recursion rather than regular expressions, principals by listing what the caller
# stands for, and the decision as the documented table. It shares no code with the evaluator.

ACTIONS = ["lambda:InvokeFunction", "lambda:GetFunction", "s3:GetObject"]
ACTION_PATTERNS = [*ACTIONS, "lambda:*", "lambda:get*", "*", "lambda:?etFunction", "s3:*"]
RESOURCES = [FN, FN + ":prod", FN_B, "arn:aws:s3:::bucket/key"]
RESOURCE_PATTERNS = [
    *RESOURCES,
    "*",
    FN + "*",
    f"arn:aws:lambda:*:{A}:function:*",
    "arn:aws:lambda:*:*:function:orders",
    "arn:aws:s3:::bucket/*",
]
CALLERS = [ALICE, BOB, SESSION, ROOT_A, ROOT_B, "lambda.amazonaws.com", "s3.amazonaws.com"]
AWS_PRINCIPALS = [ALICE, BOB, SESSION, ROLE, A, B, ROOT_A, "*"]
SERVICE_PRINCIPALS = ["lambda.amazonaws.com", "s3.amazonaws.com"]
CONDITION_KEY = "aws:SourceAccount"


def one_or_many(options: list[str]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(options), st.lists(st.sampled_from(options), min_size=1, max_size=3)
    )


OPERATORS = [
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIfExists",
    "StringNotEqualsIfExists",
    "StringLike",
    "StringNotLike",
    "ForAnyValue:StringEquals",
    "ForAnyValue:StringNotEquals",
    "ForAllValues:StringEquals",
    "ForAllValues:StringNotLike",
    "ForAnyValue:StringLikeIfExists",
    "Null",
]
CONTEXT_VALUES = [A, B, "11112"]

conditions = st.one_of(
    st.none(),
    st.lists(
        st.tuples(
            st.sampled_from(OPERATORS),
            st.lists(st.sampled_from([A, B, "1111*"]), min_size=1, max_size=2),
        ),
        min_size=1,
        max_size=2,
        unique_by=lambda pair: pair[0],
    ),
)


@st.composite
def statements(draw: st.DrawFn, principals: bool) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": draw(st.sampled_from(["Allow", "Deny"]))}
    statement["NotAction" if draw(st.booleans()) and draw(st.booleans()) else "Action"] = draw(
        one_or_many(ACTION_PATTERNS)
    )
    statement["NotResource" if draw(st.booleans()) and draw(st.booleans()) else "Resource"] = draw(
        one_or_many(RESOURCE_PATTERNS)
    )
    if principals:
        kind = draw(st.sampled_from(["star", "aws", "service", "not"]))
        if kind == "star":
            statement["Principal"] = "*"
        elif kind == "service":
            statement["Principal"] = {"Service": draw(one_or_many(SERVICE_PRINCIPALS))}
        else:
            key = "NotPrincipal" if kind == "not" and statement["Effect"] == "Deny" else "Principal"
            statement[key] = {"AWS": draw(one_or_many(AWS_PRINCIPALS))}
    condition = draw(conditions)
    if condition is not None:
        block: dict[str, Any] = {}
        for operator, values in condition:
            null_check = [draw(st.sampled_from(["true", "false"]))]
            block[operator] = {CONDITION_KEY: null_check if operator == "Null" else values}
        statement["Condition"] = block
    return statement


def documents(principals: bool) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda statements: {"Version": "2012-10-17", "Statement": statements},
        st.lists(statements(principals), min_size=1, max_size=3),
    )


def glob(pattern: str, text: str) -> bool:
    """Naive recursive wildcard match over the whole text."""
    if not pattern:
        return not text
    head = pattern[0]
    if head == "*":
        return glob(pattern[1:], text) or (bool(text) and glob(pattern, text[1:]))
    if not text:
        return False
    return (head == "?" or head == text[0]) and glob(pattern[1:], text[1:])


def arn_glob(pattern: str, arn: str) -> bool:
    """The first five components separately, the rest as a whole."""
    pattern_parts = pattern.split(":", 5)
    arn_parts = arn.split(":", 5)
    if len(pattern_parts) < 6:
        return glob(pattern, arn)
    if len(arn_parts) < 6:
        return False
    return all(glob(p, a) for p, a in zip(pattern_parts, arn_parts, strict=True))


def as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def stands_for(caller: str) -> dict[str, set[str]]:
    """Every principal name the caller answers to, by how strongly it binds."""
    if not caller.startswith("arn:"):
        return {"exact": {caller}, "role": set(), "account": set()}
    account = caller.split(":")[4]
    if caller.endswith(":root"):
        return {"exact": set(), "role": set(), "account": {account, f"arn:aws:iam::{account}:root"}}
    names = {"exact": {caller}, "role": set(), "account": {account, f"arn:aws:iam::{account}:root"}}
    if ":assumed-role/" in caller:
        role = caller.split("/")[1]
        names["role"] = {f"arn:aws:iam::{account}:role/{role}"}
    return names


def reference_holds(operator: str, policy_values: list[str], context: list[str]) -> bool:
    """One operator on one key, with the request's values (empty when absent)."""
    if operator == "Null":
        return (not context) == (policy_values == ["true"])
    qualifier, _, base = operator.rpartition(":")
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    negated = "Not" in base
    like = base.endswith("Like")

    def matches(value: str) -> bool:
        if like:
            return any(glob(pattern, value) for pattern in policy_values)
        return value in policy_values

    if not context:
        if if_exists:
            return True
        if qualifier == "ForAllValues":
            return True
        if qualifier == "ForAnyValue":
            return False
        return negated
    if qualifier == "ForAllValues":
        return all(matches(v) != negated for v in context)
    if qualifier == "ForAnyValue":
        return any(matches(v) != negated for v in context)
    if negated:
        return not any(matches(v) for v in context)
    return any(matches(v) for v in context)


def reference_condition(statement: dict[str, Any], context: dict[str, Any]) -> bool:
    for operator, keys in statement.get("Condition", {}).items():
        for key, values in keys.items():
            given = context.get(key, [])
            if not reference_holds(operator, as_list(values), as_list(given)):
                return False
    return True


def reference_statement_covers(statement: dict[str, Any], action: str, resource: str) -> bool:
    if "Action" in statement:
        action_ok = any(glob(p.lower(), action.lower()) for p in as_list(statement["Action"]))
    else:
        action_ok = not any(
            glob(p.lower(), action.lower()) for p in as_list(statement["NotAction"])
        )
    if "Resource" in statement:
        resource_ok = any(arn_glob(p, resource) for p in as_list(statement["Resource"]))
    else:
        resource_ok = not any(arn_glob(p, resource) for p in as_list(statement["NotResource"]))
    return action_ok and resource_ok


def reference_binding(statement: dict[str, Any], caller: str) -> str | None:
    """None when the statement does not speak of the caller, else exact / role / account."""
    names = stands_for(caller)
    if "NotPrincipal" in statement:
        listed = set(as_list(statement["NotPrincipal"].get("AWS", [])))
        if "*" in listed:
            return None
        if not caller.startswith("arn:"):
            return "exact"
        needed = [names["exact"], names["role"], names["account"]]
        spared = all(not group or group & listed for group in needed)
        return None if spared else "exact"
    principal = statement["Principal"]
    if principal == "*":
        return "exact"
    listed = set(as_list(principal.get("AWS", []))) | set(as_list(principal.get("Service", [])))
    if "*" in listed:
        return "exact"
    for strength in ("exact", "role", "account"):
        if names[strength] & listed:
            return strength
    return None


def reference(
    caller: str,
    action: str,
    resource: str,
    context: dict[str, Any],
    identity_docs: list[dict[str, Any]],
    resource_doc: dict[str, Any] | None,
    session_doc: dict[str, Any] | None,
    root: bool,
) -> tuple[bool, Denial | None]:
    def applicable(doc: dict[str, Any], effect: str) -> list[dict[str, Any]]:
        return [
            s
            for s in doc["Statement"]
            if s["Effect"] == effect
            and reference_statement_covers(s, action, resource)
            and reference_condition(s, context)
        ]

    # Step 1: explicit denies (identity, then resource, then session, as Lamina reports them).
    if any(applicable(doc, "Deny") for doc in identity_docs):
        return False, Denial.IDENTITY_DENY
    resource_allow: set[str] = set()
    if resource_doc is not None:
        for statement in applicable(resource_doc, "Deny"):
            if reference_binding(statement, caller) is not None:
                return False, Denial.RESOURCE_DENY
        resource_allow = {
            binding
            for statement in applicable(resource_doc, "Allow")
            if (binding := reference_binding(statement, caller)) is not None
        }
    if session_doc is not None and applicable(session_doc, "Deny"):
        return False, Denial.SESSION_DENY
    # Step 2: allows.
    service = not caller.startswith("arn:")
    if service:
        return ("exact" in resource_allow), (
            None if "exact" in resource_allow else Denial.NO_RESOURCE_ALLOW
        )
    identity_allow = root or any(applicable(doc, "Allow") for doc in identity_docs)
    session_allow = session_doc is None or bool(applicable(session_doc, "Allow"))
    caller_account = caller.split(":")[4]
    resource_account = resource.split(":")[4]
    same_account = resource_account in ("", caller_account)
    if same_account:
        if "exact" in resource_allow:
            return True, None
        if (identity_allow or "role" in resource_allow) and session_allow:
            return True, None
        if identity_allow or "role" in resource_allow:
            return False, Denial.NO_SESSION_ALLOW
        return False, Denial.NO_IDENTITY_ALLOW
    if not identity_allow:
        return False, Denial.NO_IDENTITY_ALLOW
    if not session_allow:
        return False, Denial.NO_SESSION_ALLOW
    if not resource_allow:
        return False, Denial.NO_RESOURCE_ALLOW
    return True, None


@settings(database=None, max_examples=600, deadline=None)
@given(
    caller=st.sampled_from(CALLERS),
    action=st.sampled_from(ACTIONS),
    resource=st.sampled_from(RESOURCES),
    context=st.dictionaries(
        st.just(CONDITION_KEY),
        st.one_of(
            st.sampled_from(CONTEXT_VALUES),
            st.lists(st.sampled_from(CONTEXT_VALUES), max_size=2),
        ),
        max_size=1,
    ),
    identity_docs=st.lists(documents(principals=False), max_size=2),
    resource_doc=st.one_of(st.none(), documents(principals=True)),
    session_doc=st.one_of(st.none(), documents(principals=False)),
)
def test_evaluate_agrees_with_the_reference(
    caller: str,
    action: str,
    resource: str,
    context: dict[str, Any],
    identity_docs: list[dict[str, Any]],
    resource_doc: dict[str, Any] | None,
    session_doc: dict[str, Any] | None,
) -> None:
    service = not caller.startswith("arn:")
    root = caller.endswith(":root")
    if service:
        identity_docs, session_doc = [], None
    if root:
        identity_docs, session_doc = [], None
    call = AuthRequest(
        principal_arn=caller,
        principal_account="" if service else caller.split(":")[4],
        action=action,
        resource=resource,
        resource_account=resource.split(":")[4],
        context=context,
    )
    identities = [parse_policy(json.dumps(doc), PolicyKind.IDENTITY) for doc in identity_docs]
    resource_policy_ = (
        None
        if resource_doc is None
        else parse_policy(json.dumps(resource_doc), PolicyKind.RESOURCE)
    )
    session = (
        None if session_doc is None else parse_policy(json.dumps(session_doc), PolicyKind.IDENTITY)
    )
    decision = evaluate(call, identities, resource_policy_, session, root=root)
    expected = reference(
        caller, action, resource, context, identity_docs, resource_doc, session_doc, root
    )
    event(expected[1].name if expected[1] is not None else "allowed")
    assert (decision.allowed, decision.denial) == expected


def test_a_federation_provider_is_matched_by_federated() -> None:
    trust = trust_policy(
        {
            "Effect": "Allow",
            "Principal": {"Federated": "cognito-identity.amazonaws.com"},
            "Action": "sts:AssumeRoleWithWebIdentity",
        }
    )
    call = AuthRequest(
        "cognito-identity.amazonaws.com", "", "sts:AssumeRoleWithWebIdentity", ROLE, A
    )
    assert evaluate(call, [], trust) == ALLOWED
