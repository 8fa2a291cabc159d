"""A parsed policy: what `parse_policy` returns and `evaluate` reads."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from lamina.identity.policy.conditions import ConditionTest, Context
from lamina.identity.policy.principals import PrincipalSet
from lamina.identity.policy.wildcards import Matcher, TemplateMatcher


class PolicyKind(enum.Enum):
    """Where a policy is attached, which decides the elements IAM requires or forbids."""

    IDENTITY = "identity"  # attached to a user or role, or an AssumeRole session policy
    RESOURCE = "resource"  # attached to a resource (function policy, key policy...)
    TRUST = "trust"  # a role's AssumeRolePolicyDocument


class MalformedPolicy(Exception):
    """A policy IAM would refuse; `message` is AWS's MalformedPolicyDocument text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement, with its patterns compiled."""

    sid: str | None
    allow: bool
    actions: Matcher
    not_action: bool
    resources: Matcher | TemplateMatcher | None  # None: no Resource element (trust policies)
    not_resource: bool
    principals: PrincipalSet | None  # None: no Principal element (identity policies)
    not_principal: bool
    conditions: tuple[ConditionTest, ...]
    # Whether deciding it reads the request's condition keys (a Condition, or a policy
    # variable in Resource); set from the two.
    reads_keys: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        reads = bool(self.conditions) or isinstance(self.resources, TemplateMatcher)
        object.__setattr__(self, "reads_keys", reads)

    def covers(self, action: str, resource: str, keys: Context) -> bool:
        """Whether the statement's Action/NotAction and Resource/NotResource take in the call."""
        if self.actions.matches(action) == self.not_action:
            return False
        if self.resources is None:
            return True
        return self.resources.matches_in(resource, keys) != self.not_resource


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated policy document."""

    kind: PolicyKind
    version: str
    statements: tuple[Statement, ...]
    id: str | None = None
    # The managed policy's ARN, when the caller knows it: AWS names the policy that
    # explicitly denies a same-account request in its AccessDenied sentence.
    arn: str | None = None
    # Whether any statement reads the request's condition keys: if none does, a decision
    # under this policy depends only on who asks what on which resource.
    reads_keys: bool = field(init=False, default=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        reads = any(statement.reads_keys for statement in self.statements)
        object.__setattr__(self, "reads_keys", reads)

    def named_principals(self) -> frozenset[str]:
        """The user, role and session ARNs the Principal/NotPrincipal elements name.

        IAM refuses a trust or resource policy naming a user or role that does not exist
        (`Invalid principal in policy: "AWS":"<arn>"`); the caller, which knows what exists,
        checks these.
        """
        return frozenset(
            arn
            for statement in self.statements
            if statement.principals is not None
            for arn in statement.principals.arns
        )
