"""The first pass IAM makes over a policy: JSON shape only, all faults "Syntax errors"."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from lamina.identity.policy import messages as m
from lamina.identity.policy.conditions import split_operator
from lamina.identity.policy.document import MalformedPolicy

VERSIONS = ("2012-10-17", "2008-10-17")
_TOP_ELEMENTS = frozenset({"Version", "Id", "Statement"})
_STATEMENT_ELEMENTS = frozenset(
    {
        "Sid",
        "Effect",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Principal",
        "NotPrincipal",
        "Condition",
    }
)
_EXCLUSIVE = (("Action", "NotAction"), ("Resource", "NotResource"), ("Principal", "NotPrincipal"))
_STRING_LISTS = ("Action", "NotAction", "Resource", "NotResource")
_PRINCIPAL_TYPES = frozenset({"AWS", "Service", "Federated", "CanonicalUser"})
_IAM_PATHS = (
    "user/",
    "federated-user/",
    "role/",
    "group/",
    "instance-profile/",
    "mfa/",
    "server-certificate/",
    "policy/",
    "sms-mfa/",
    "saml-provider/",
    "oidc-provider/",
    "report/",
    "access-report/",
)


class _Syntax(Exception):
    """Internal: any shape fault, reported as IAM's one syntax message."""


def check_syntax(
    text: str, invalid_json: str = m.SYNTAX
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The document and its statements; raises MalformedPolicy(SYNTAX) on any shape fault.

    Text that is not JSON at all gets `invalid_json`: IAM's identity-policy parser calls it a
    syntax error, while the trust-policy path (CreateRole) says the JSON is invalid.
    """
    try:
        document = json.loads(text)
    except ValueError:
        raise MalformedPolicy(invalid_json) from None
    try:
        return document, _statements(document)
    except (_Syntax, TypeError):
        raise MalformedPolicy(m.SYNTAX) from None


def listed(statement: Mapping[str, Any], key: str) -> list[str]:
    """A string-or-list element as a list (empty when absent)."""
    value = statement.get(key)
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _require(condition: bool) -> None:
    if not condition:
        raise _Syntax


def _statements(document: Any) -> list[dict[str, Any]]:
    _require(isinstance(document, dict))
    _require(set(document) <= _TOP_ELEMENTS)
    _require(document.get("Version", VERSIONS[0]) in VERSIONS)
    _require(isinstance(document.get("Id", ""), str))
    raw = document.get("Statement")
    _require(isinstance(raw, (dict, list)))
    statements = [raw] if isinstance(raw, dict) else raw
    _require(len(statements) > 0)
    for statement in statements:
        _statement(statement)
    return statements


def _statement(statement: Any) -> None:
    _require(isinstance(statement, dict))
    _require(set(statement) <= _STATEMENT_ELEMENTS)
    for first, second in _EXCLUSIVE:
        _require(not (first in statement and second in statement))
    effect = statement.get("Effect")
    _require(isinstance(effect, str) and effect.lower() in ("allow", "deny"))
    for key in _STRING_LISTS:
        if key in statement:
            _string_or_strings(statement[key])
    _require(isinstance(statement.get("Sid", ""), str))
    for key in ("Principal", "NotPrincipal"):
        if key in statement:
            _principal(statement[key])
    if "Condition" in statement:
        _condition(statement["Condition"])


def _string_or_strings(value: Any) -> None:
    _require(
        isinstance(value, str)
        or (isinstance(value, list) and all(isinstance(item, str) for item in value))
    )


def _principal(value: Any) -> None:
    if isinstance(value, str):
        _require(value == "*")
        return
    _require(isinstance(value, dict) and len(value) > 0)
    for kind, names in value.items():
        _require(kind in _PRINCIPAL_TYPES)
        _string_or_strings(names)


def _condition(block: Any) -> None:
    _require(isinstance(block, dict))
    for name, keys in block.items():
        _require(isinstance(keys, dict))
        for values in keys.values():
            items = values if isinstance(values, list) else [values]
            _require(all(isinstance(item, (str, bool, int, float)) for item in items))
        # IAM lets an unknown operator through only with nothing under it.
        _require(split_operator(name) is not None or not keys)


def resource_format_error(resource: str) -> str | None:
    """IAM's message for a Resource that is not `*` or a well-formed ARN, else None."""
    if resource == "*":
        return None
    parts = resource.split(":")
    if len(parts) < 2:
        return m.not_arn(resource)
    partition = parts[1]
    if partition != "aws":
        rest = parts[2:]
        fields = [
            rest[i] if len(rest) > i and (rest[i] or i > 0 or len(rest) > 1) else "*"
            for i in range(3)
        ]
        resource_id = ":".join(rest[3:]) if len(rest) > 3 else "*"
        shown = ":".join([f"arn:{partition}", *fields, resource_id])
        return f'Partition "{partition}" is not valid for resource "{shown}".'
    if len(parts) < 3 or any(char in parts[2] for char in "*?") or not parts[2]:
        return m.RESOURCE_VENDOR
    service = parts[2]
    region = parts[3] if len(parts) > 3 else ""
    if service == "iam" and region:
        return f"IAM resource {resource} cannot contain region information."
    if service == "s3" and region:
        return f"Resource {resource} can not contain region information."
    if service == "iam":
        path = ":".join(parts[5:])
        if path != "*" and not path.startswith(_IAM_PATHS):
            return (
                'IAM resource path must either be "*" or start with ' + ", ".join(_IAM_PATHS) + "."
            )
    return None
