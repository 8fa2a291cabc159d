"""KMS's evaluation: a key is reached only through its key policy, which either names the
caller (granting on its own) or names the account (delegating to identity policies)."""

from __future__ import annotations

import pytest

from lamina.identity.policy import AuthRequest, Denial, Policy, evaluate_key_policy
from tests.unit.test_policy_evaluator import (
    ALICE,
    BOB,
    ROLE,
    ROOT_A,
    SESSION,
    A,
    B,
    allow,
    deny,
    identity,
    resource_policy,
)

KEY = f"arn:aws:kms:us-east-1:{A}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
DECRYPT = "kms:Decrypt"


def request(principal: str, account: str = A) -> AuthRequest:
    return AuthRequest(principal, account, DECRYPT, KEY, A)


def key_policy_naming(principal: str) -> Policy:
    return resource_policy(allow(DECRYPT, Principal={"AWS": principal}))


def test_the_account_delegates_to_identity_policies() -> None:
    policy = key_policy_naming(ROOT_A)
    refused = evaluate_key_policy(request(ALICE), (), policy)
    assert refused.denial is Denial.NO_IDENTITY_ALLOW
    granted = identity(allow(DECRYPT, KEY))
    assert evaluate_key_policy(request(ALICE), (granted,), policy)
    # The root user needs no identity policy where the account is named.
    assert evaluate_key_policy(request(ROOT_A), (), policy, root=True)


def test_identity_policies_do_not_reach_a_key_that_leaves_the_account_out() -> None:
    policy = key_policy_naming(ALICE)
    everything = identity(allow("kms:*"))
    refused = evaluate_key_policy(request(f"arn:aws:iam::{A}:user/carol"), (everything,), policy)
    assert refused.denial is Denial.NO_RESOURCE_ALLOW
    root = evaluate_key_policy(request(ROOT_A), (), policy, root=True)
    assert root.denial is Denial.NO_RESOURCE_ALLOW
    assert evaluate_key_policy(request(ALICE), (), policy)


def test_a_session_policy_narrows_what_the_role_is_granted() -> None:
    policy = key_policy_naming(ROLE)
    narrow = identity(allow("kms:Encrypt"))
    assert evaluate_key_policy(request(SESSION), (), policy)
    refused = evaluate_key_policy(request(SESSION), (), policy, narrow)
    assert refused.denial is Denial.NO_SESSION_ALLOW


@pytest.mark.parametrize(
    ("where", "expected"),
    [("identity", Denial.IDENTITY_DENY), ("key", Denial.RESOURCE_DENY)],
)
def test_an_explicit_deny_anywhere_refuses(where: str, expected: Denial) -> None:
    statements = [allow(DECRYPT, Principal={"AWS": ALICE})]
    own = [allow(DECRYPT)]
    if where == "key":
        statements.append(deny(DECRYPT, Principal={"AWS": ALICE}))
    else:
        own.append(deny(DECRYPT))
    decision = evaluate_key_policy(request(ALICE), (identity(*own),), resource_policy(*statements))
    assert decision.denial is expected


def test_another_account_needs_the_key_policy_and_its_own_policies() -> None:
    policy = key_policy_naming(B)
    refused = evaluate_key_policy(request(BOB, B), (), policy)
    assert refused.denial is Denial.NO_IDENTITY_ALLOW
    granted = identity(allow(DECRYPT, KEY))
    assert evaluate_key_policy(request(BOB, B), (granted,), policy)
    outsider = evaluate_key_policy(request(BOB, B), (granted,), key_policy_naming(ROOT_A))
    assert outsider.denial is Denial.NO_RESOURCE_ALLOW
