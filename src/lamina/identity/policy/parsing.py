"""`parse_policy`: validate a JSON policy as IAM does and compile it.

The checks run in the order IAM reports them, so a policy with several faults gets the same
first message AWS gives. The texts are AWS's MalformedPolicyDocument messages as IAM returns
them (and as the moto/LocalStack suites, verified against AWS, quote them).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from lamina.identity.policy import messages as m
from lamina.identity.policy.conditions import BadConditionValue, ConditionTest, compile_condition
from lamina.identity.policy.document import MalformedPolicy, Policy, PolicyKind, Statement
from lamina.identity.policy.principals import (
    PrincipalSet,
    valid_aws_principal,
    valid_service_principal,
)
from lamina.identity.policy.syntax import check_syntax, listed, resource_format_error
from lamina.identity.policy.wildcards import Matcher, resource_matcher

CURRENT_VERSION = "2012-10-17"
LEGACY_VERSION = "2008-10-17"

_PRINCIPAL_KEYS = ("Principal", "NotPrincipal")
# What a trust policy may grant (matched case-insensitively, as actions are).
_TRUST_ACTIONS = frozenset(
    action.lower()
    for action in (
        "sts:AssumeRole",
        "sts:AssumeRoleWithSAML",
        "sts:AssumeRoleWithWebIdentity",
        "sts:TagSession",
        "sts:SetSourceIdentity",
        "sts:SetContext",
    )
)


def parse_policy(text: str, kind: PolicyKind, arn: str | None = None) -> Policy:
    """The compiled policy; raises MalformedPolicy with AWS's message when IAM would refuse it.

    `arn` is the managed policy's ARN, named when the policy explicitly denies a request.
    """
    invalid_json = m.SYNTAX if kind is PolicyKind.IDENTITY else m.INVALID_JSON
    document, statements = check_syntax(text, invalid_json)
    _check_placement(statements, kind)
    version = document.get("Version", LEGACY_VERSION)
    if kind is PolicyKind.IDENTITY and version != CURRENT_VERSION:
        raise MalformedPolicy(m.OLD_VERSION)
    _check_legacy(statements)
    _check_sids(statements, kind)
    for statement in statements:
        if not listed(statement, "Action") and not listed(statement, "NotAction"):
            raise MalformedPolicy(m.NO_ACTIONS)
    if kind is PolicyKind.TRUST:
        for statement in statements:
            for action in listed(statement, "Action") + listed(statement, "NotAction"):
                if action != "*" and action.lower() not in _TRUST_ACTIONS:
                    raise MalformedPolicy(m.TRUST_ACTIONS)
    else:
        for statement in statements:
            if not listed(statement, "Resource") and not listed(statement, "NotResource"):
                raise MalformedPolicy(m.NO_RESOURCES)
        _check_resource_formats(statements)
    for statement in statements:
        for key in ("Action", "NotAction"):
            for action in listed(statement, key):
                m.check_action(action)
    if kind is not PolicyKind.IDENTITY:
        for statement in statements:
            _check_principals(statement)
    variables = version == CURRENT_VERSION
    compiled = tuple(_compile(statement, variables) for statement in statements)
    return Policy(kind, version, compiled, document.get("Id"), arn)


def _check_placement(statements: list[dict[str, Any]], kind: PolicyKind) -> None:
    """Principal only where a resource speaks; Resource never in a trust policy."""
    for statement in statements:
        named = any(key in statement for key in _PRINCIPAL_KEYS)
        if kind is PolicyKind.IDENTITY and named:
            raise MalformedPolicy(m.PRINCIPAL_IN_IDENTITY)
        if kind is PolicyKind.TRUST:
            for key in ("Resource", "NotResource"):
                if key in statement:
                    raise MalformedPolicy(m.prohibited_field(key))
        if kind is PolicyKind.TRUST and not named:
            raise MalformedPolicy(m.TRUST_WITHOUT_PRINCIPAL)
        if kind is PolicyKind.RESOURCE and not named:
            raise MalformedPolicy(m.missing_field("Principal"))


def _check_legacy(statements: list[dict[str, Any]]) -> None:
    """IAM's older parser: Effect is case-sensitive and condition dates must read."""
    for statement in statements:
        if statement["Effect"] not in ("Allow", "Deny"):
            raise MalformedPolicy(m.LEGACY_PARSING)
        for resource in listed(statement, "Resource") + listed(statement, "NotResource"):
            if resource == "*":
                continue
            parts = resource.split(":")
            if ("::" in resource and len(parts) < 6) or (len(parts) > 2 and parts[2] == ""):
                raise MalformedPolicy(m.LEGACY_PARSING)
        try:
            _compile_conditions(statement.get("Condition", {}))
        except BadConditionValue:
            raise MalformedPolicy(m.LEGACY_PARSING) from None


def _check_sids(statements: list[dict[str, Any]], kind: PolicyKind) -> None:
    seen: set[str] = set()
    for statement in statements:
        sid = statement.get("Sid")
        if not sid:
            continue
        if sid in seen:
            raise MalformedPolicy(m.DUPLICATE_SID)
        seen.add(sid)
    if kind is PolicyKind.RESOURCE:
        return  # resource policies (AddPermission's StatementId) allow `-`, `_` and `.`
    for sid in seen:
        if not (sid.isascii() and sid.isalnum()):
            raise MalformedPolicy(m.SID_NOT_ALPHANUMERIC)


def _check_resource_formats(statements: list[dict[str, Any]]) -> None:
    for statement in statements:
        for key in ("Resource", "NotResource"):
            for resource in sorted(listed(statement, key), reverse=True):
                error = resource_format_error(resource)
                if error is not None:
                    raise MalformedPolicy(error)


def _check_principals(statement: Mapping[str, Any]) -> None:
    for key in _PRINCIPAL_KEYS:
        principal = statement.get(key)
        if not isinstance(principal, dict):
            continue
        for value in _values(principal.get("AWS")):
            if not valid_aws_principal(value):
                raise MalformedPolicy(m.invalid_principal("AWS", value))
        for value in _values(principal.get("Service")):
            if not valid_service_principal(value):
                raise MalformedPolicy(m.invalid_principal("SERVICE", value))


def _values(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _compile(statement: Mapping[str, Any], variables: bool) -> Statement:
    not_action = "NotAction" in statement
    actions = Matcher(
        listed(statement, "NotAction" if not_action else "Action"), arns=False, ignore_case=True
    )
    not_resource = "NotResource" in statement
    resource_key = "NotResource" if not_resource else "Resource"
    resources = (
        resource_matcher(listed(statement, resource_key), variables=variables)
        if resource_key in statement
        else None
    )
    not_principal = "NotPrincipal" in statement
    raw_principal = statement.get("NotPrincipal" if not_principal else "Principal")
    return Statement(
        sid=statement.get("Sid") or None,
        allow=statement["Effect"] == "Allow",
        actions=actions,
        not_action=not_action,
        resources=resources,
        not_resource=not_resource,
        principals=None if raw_principal is None else _principal_set(raw_principal),
        not_principal=not_principal,
        conditions=_compile_conditions(statement.get("Condition", {}), variables),
    )


def _principal_set(raw: Any) -> PrincipalSet:
    if raw == "*":
        return PrincipalSet.build(everyone=True)
    others = _values(raw.get("Federated")) + _values(raw.get("CanonicalUser"))
    return PrincipalSet.build(
        everyone=False,
        aws=_values(raw.get("AWS")),
        services=_values(raw.get("Service")),
        others=others,
    )


def _compile_conditions(
    block: Mapping[str, Mapping[str, Any]], variables: bool = False
) -> tuple[ConditionTest, ...]:
    tests = []
    for name, keys in block.items():
        for key, raw in keys.items():
            test = compile_condition(name, key, _condition_values(raw), variables)
            if test is not None:
                tests.append(test)
    return tuple(tests)


def _condition_values(raw: Any) -> list[str]:
    values = raw if isinstance(raw, list) else [raw]
    return [_condition_text(value) for value in values]


def _condition_text(value: Any) -> str:
    # JSON true/false/numbers are read as IAM reads them: as their text.
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


class PolicyCache:
    """Compiled policies by text, so a policy evaluated on every call is parsed once.

    Policies are immutable, so one compiled copy is shared by every caller. Refused texts are
    not remembered: they raise MalformedPolicy each time.
    """

    def __init__(self, max_entries: int = 1024) -> None:
        self._max_entries = max_entries
        self._entries: dict[tuple[str, PolicyKind, str | None], Policy] = {}
        self._lock = threading.Lock()  # only writers take it; reads are single dict lookups

    def get(self, text: str, kind: PolicyKind, arn: str | None = None) -> Policy:
        """The compiled policy for `text` (parsed now if not cached)."""
        key = (text, kind, arn)
        policy = self._entries.get(key)
        if policy is None:
            policy = parse_policy(text, kind, arn)
            with self._lock:
                while len(self._entries) >= self._max_entries:
                    # Evict the oldest entry (dicts keep insertion order).
                    del self._entries[next(iter(self._entries))]
                self._entries[key] = policy
        return policy

    def __len__(self) -> int:
        return len(self._entries)
