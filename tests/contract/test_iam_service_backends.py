"""IAM's rules (`lamina.control.iam`, `lamina.control.sts`) over every store backend: quotas
hold under concurrent callers, what one node writes another node's service finds, and AWS's
own managed policies are valid identity policies and attachable everywhere."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from lamina.arns import Account
from lamina.control.iam import IamService, compile_policy
from lamina.control.sts import StsService
from lamina.errors import EntityAlreadyExists, LimitExceeded
from lamina.identity.managed_policies import aws_managed_policies
from lamina.identity.policy import PolicyKind
from lamina.model.iam import ROLE
from tests.support.backends import Backend

ACCOUNT = Account("123456789012", "us-east-1")
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": ACCOUNT.account_id},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def _race(count: int, attempt: Any) -> list[BaseException | None]:
    """Runs `attempt` on `count` threads released together; what each raised (or None)."""
    barrier = threading.Barrier(count)
    outcomes: list[BaseException | None] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            attempt()
        except Exception as error:  # collected and asserted on below
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_quotas_hold_under_concurrent_callers(store_backend: Backend) -> None:
    iam = IamService(store_backend.stores().iam, ACCOUNT)
    iam.create_user("racer")
    outcomes = _race(6, lambda: iam.create_access_key("racer"))
    assert sum(outcome is None for outcome in outcomes) == 2
    assert all(isinstance(o, LimitExceeded) for o in outcomes if o is not None)
    assert len(iam.access_keys("racer")) == 2

    created = _race(4, lambda: iam.create_role("same-name", TRUST))
    assert sum(outcome is None for outcome in created) == 1
    assert all(isinstance(o, EntityAlreadyExists) for o in created if o is not None)


def test_another_node_sees_the_same_identities(store_backend: Backend) -> None:
    first = IamService(store_backend.stores().iam, ACCOUNT)
    second = IamService(store_backend.stores().iam, ACCOUNT)
    role = first.create_role("shared", TRUST)
    first.attach(ROLE, "shared", "arn:aws:iam::aws:policy/service-role/AWSLambdaRole")
    assumed = StsService(first).assume_role(StsService(first).root(), role.arn, "node-one")
    caller = StsService(second).caller(assumed.session.access_key_id)
    assert caller.arn == f"arn:aws:sts::{ACCOUNT.account_id}:assumed-role/shared/node-one"
    assert caller.user_id == f"{role.role_id}:node-one"
    assert [p.name for p in second.attached(ROLE, "SHARED")] == ["AWSLambdaRole"]
    assert len(second.identity_policies(ROLE, "shared")) == 1


@pytest.mark.parametrize("entity", aws_managed_policies(), ids=lambda e: e[0].name)
def test_aws_managed_policies_are_valid_identity_policies(entity: Any) -> None:
    policy, version = entity
    assert version.version_id == policy.default_version
    assert compile_policy(version.document, PolicyKind.IDENTITY).statements
