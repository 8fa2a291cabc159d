"""Decisions remembered by `Authority` never outlive what they were made from.

A decision is kept only while neither the IAM store nor the function store changes, and only
when no policy involved reads a condition key; these calls go through `PolicyAuthorizer`
over real SQLite stores, changing policies between calls.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lamina.api.authorization import PolicyAuthorizer
from lamina.arns import Account
from lamina.control.access import Authority
from lamina.control.iam import IamService
from lamina.errors import AccessDenied
from lamina.identity.caller import Caller, CallerKind
from lamina.identity.sigv4 import Signer
from lamina.model.iam import USER, InlinePolicy
from lamina.store.sqlite import open_stores

ACCOUNT = Account("111122223333", "eu-west-1")
ALICE = Signer(
    Caller("arn:aws:iam::111122223333:user/alice", ACCOUNT.account_id, CallerKind.USER, "alice"),
    "eu-west-1",
)
INVOKE = {"FunctionName": "f"}


def statement(effect: str, **condition: object) -> str:
    found: dict[str, object] = {
        "Effect": effect,
        "Action": "lambda:InvokeFunction",
        "Resource": "*",
    }
    if condition:
        found["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [found]})


@pytest.fixture
def setting(tmp_path: Path) -> tuple[IamService, PolicyAuthorizer]:
    stores = open_stores(tmp_path / "data")
    iam = IamService(stores.iam, ACCOUNT)
    iam.create_user("alice")
    return iam, PolicyAuthorizer(Authority(iam, stores.functions), iam, ACCOUNT)


def allowed(authorizer: PolicyAuthorizer, source_ip: str = "10.0.0.1") -> bool:
    try:
        authorizer.authorize("lambda", "Invoke", INVOKE, ALICE, source_ip)
    except AccessDenied:
        return False
    return True


def test_a_policy_change_takes_effect_on_the_next_call(
    setting: tuple[IamService, PolicyAuthorizer],
) -> None:
    iam, authorizer = setting
    assert not allowed(authorizer)
    iam.store.put_inline_policy(InlinePolicy(USER, "alice", "invoke", statement("Allow")))
    assert allowed(authorizer) and allowed(authorizer)
    iam.store.put_inline_policy(InlinePolicy(USER, "alice", "deny", statement("Deny")))
    assert not allowed(authorizer)
    iam.store.delete_inline_policy(USER, "alice", "deny")
    assert allowed(authorizer)
    iam.store.delete_inline_policy(USER, "alice", "invoke")
    assert not allowed(authorizer)


def test_a_decision_that_reads_the_request_is_made_for_each_request(
    setting: tuple[IamService, PolicyAuthorizer],
) -> None:
    iam, authorizer = setting
    only_here = statement("Allow", IpAddress={"aws:SourceIp": "10.0.0.0/8"})
    iam.store.put_inline_policy(InlinePolicy(USER, "alice", "invoke", only_here))
    assert allowed(authorizer, "10.1.2.3")
    assert not allowed(authorizer, "192.168.1.1")
    assert allowed(authorizer, "10.9.9.9")
