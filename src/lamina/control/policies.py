"""Resource-based policies on functions: statements, as AWS writes them, and their evaluation."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from lamina.arns import FunctionRef
from lamina.constants import LATEST, POLICY_MAX_BYTES
from lamina.control.context import Domain
from lamina.control.functions import (
    FunctionNotFound,
    FunctionService,
    alias_not_found,
    merge_qualifier,
)
from lamina.errors import (
    InvalidParameterValue,
    PolicyLengthExceeded,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
)
from lamina.model.functions import Policy, new_revision_id

POLICY_KIND = "policy"

_ACCOUNT_ID = re.compile(r"\d{12}")
_SERVICE_PRINCIPAL = re.compile(r"[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)+")
_STALE_POLICY_REVISION = (
    "The Revision Id provided does not match the latest Revision Id. "
    "Call the GetPolicy API to retrieve the latest Revision Id"
)


@dataclass(frozen=True)
class Permission:
    """What AddPermission grants: one statement's parts, before rendering."""

    statement_id: str
    action: str
    principal: str
    source_arn: str | None = None
    source_account: str | None = None
    principal_org_id: str | None = None
    function_url_auth_type: str | None = None
    event_source_token: str | None = None
    invoked_via_function_url: bool = False


def render_principal(principal: str) -> str | dict[str, str]:
    """AWS's rendering of the Principal given to AddPermission."""
    if principal == "*":
        return "*"
    if _ACCOUNT_ID.fullmatch(principal):
        return {"AWS": f"arn:aws:iam::{principal}:root"}
    if principal.startswith("arn:"):
        return {"AWS": principal}
    if _SERVICE_PRINCIPAL.fullmatch(principal):
        return {"Service": principal}
    raise InvalidParameterValue(
        "The provided principal was invalid. Please check the principal and try again."
    )


def render_statement(permission: Permission, resource: str) -> dict[str, Any]:
    """One policy statement, with keys and condition operators in AWS's order."""
    string_equals: dict[str, str] = {}
    if permission.source_account:
        string_equals["AWS:SourceAccount"] = permission.source_account
    if permission.principal_org_id:
        string_equals["aws:PrincipalOrgID"] = permission.principal_org_id
    if permission.function_url_auth_type:
        string_equals["lambda:FunctionUrlAuthType"] = permission.function_url_auth_type
    if permission.event_source_token:
        string_equals["lambda:EventSourceToken"] = permission.event_source_token
    condition: dict[str, dict[str, str]] = {}
    if string_equals:
        condition["StringEquals"] = string_equals
    if permission.source_arn:
        condition["ArnLike"] = {"AWS:SourceArn": permission.source_arn}
    if permission.invoked_via_function_url:
        condition["Bool"] = {"lambda:InvokedViaFunctionUrl": "true"}
    statement: dict[str, Any] = {
        "Sid": permission.statement_id,
        "Effect": "Allow",
        "Principal": render_principal(permission.principal),
        "Action": permission.action,
        "Resource": resource,
    }
    if condition:
        statement["Condition"] = condition
    return statement


def policy_document(policy: Policy) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Id": "default", "Statement": list(policy.statements.values())}


def policy_json(policy: Policy) -> str:
    return orjson.dumps(policy_document(policy)).decode()


class PolicyService:
    """AddPermission, RemovePermission and GetPolicy on a function, a version or an alias."""

    def __init__(self, domain: Domain, functions: FunctionService) -> None:
        self._functions = functions
        self._store = domain.stores.functions
        self._account = domain.account

    def _target(self, ref: FunctionRef, qualifier: str | None) -> tuple[str, str | None]:
        """The function name and the qualifier the policy hangs off; both must exist.

        A missing function is named without the qualifier, a missing alias as AWS names it
        (`Cannot find alias arn`)."""
        qualifier = merge_qualifier(ref, qualifier)
        if qualifier == LATEST:
            qualifier = None
        self._functions.require(ref.name)
        try:
            resolved = self._functions.resolve(ref, qualifier)
        except FunctionNotFound as error:
            raise alias_not_found(error) from None
        return resolved.record.name, qualifier

    def _load(self, name: str, qualifier: str | None) -> Policy | None:
        doc = self._store.get_child(name, POLICY_KIND, qualifier or LATEST)
        return Policy.from_doc(doc) if doc is not None else None

    def add_permission(
        self,
        ref: FunctionRef,
        qualifier: str | None,
        permission: Permission,
        revision_id: str | None,
    ) -> dict[str, Any]:
        if merge_qualifier(ref, qualifier) == LATEST:
            raise InvalidParameterValue("We currently do not support adding policies for $LATEST.")
        with self._store.transaction():
            name, qualifier = self._target(ref, qualifier)
            policy = self._load(name, qualifier) or Policy()
            _check_policy_revision(revision_id, policy, exists=bool(policy.statements))
            if permission.statement_id in policy.statements:
                raise ResourceConflict(
                    f"The statement id ({permission.statement_id}) provided already exists. "
                    "Please provide a new statement id, or remove the existing statement."
                )
            statement = render_statement(permission, self._account.function_arn(name, qualifier))
            updated = replace(
                policy,
                statements={**policy.statements, permission.statement_id: statement},
                revision_id=new_revision_id(),
            )
            size = len(policy_json(updated).encode())
            if size > POLICY_MAX_BYTES:
                raise PolicyLengthExceeded(
                    f"The final policy size ({size}) is bigger than the limit ({POLICY_MAX_BYTES})."
                )
            self._store.put_child(name, POLICY_KIND, qualifier or LATEST, updated.to_doc())
            return statement

    def remove_permission(
        self,
        ref: FunctionRef,
        qualifier: str | None,
        statement_id: str,
        revision_id: str | None,
    ) -> None:
        with self._store.transaction():
            if self._store.get(ref.name) is None:
                raise ResourceNotFound(
                    f"No policy found for: {self._account.function_arn(ref.name)}"
                )
            name, qualifier = self._target(ref, qualifier)
            policy = self._load(name, qualifier) or Policy()
            if not policy.statements:
                raise ResourceNotFound("No policy is associated with the given resource.")
            if statement_id not in policy.statements:
                raise ResourceNotFound(f"Statement {statement_id} is not found in resource policy.")
            _check_policy_revision(revision_id, policy, exists=True)
            remaining = {
                sid: statement
                for sid, statement in policy.statements.items()
                if sid != statement_id
            }
            key = qualifier or LATEST
            if remaining:
                updated = Policy(statements=remaining, revision_id=new_revision_id())
                self._store.put_child(name, POLICY_KIND, key, updated.to_doc())
            else:
                self._store.delete_child(name, POLICY_KIND, key)

    def get_policy(self, ref: FunctionRef, qualifier: str | None) -> Policy:
        try:
            name, qualifier = self._target(ref, qualifier)
        except ResourceNotFound as error:
            if self._store.get(ref.name) is None:
                raise
            # A missing version or alias simply has no policy, as AWS answers.
            raise ResourceNotFound("The resource you requested does not exist.") from error
        policy = self._load(name, qualifier)
        if policy is None or not policy.statements:
            raise ResourceNotFound("The resource you requested does not exist.")
        return policy

    def statements_for(self, name: str, qualifier: str | None) -> list[dict[str, Any]]:
        """The statements attached to exactly `name[:qualifier]` (none when there is no policy)."""
        policy = self._load(name, None if qualifier == LATEST else qualifier)
        return list(policy.statements.values()) if policy else []


def _check_policy_revision(expected: str | None, policy: Policy, *, exists: bool) -> None:
    # With no policy there is no revision a caller could have read, so any RevisionId is stale.
    if expected is not None and (not exists or expected != policy.revision_id):
        raise PreconditionFailed(_STALE_POLICY_REVISION)


# ------------------------------------------------------------------ evaluation


@dataclass(frozen=True)
class Caller:
    """Who asks: a service principal, an AWS identity (account and optional ARN), or anyone.

    All fields empty means an anonymous caller, which only a `"*"` principal admits.
    """

    service: str | None = None
    account_id: str | None = None
    arn: str | None = None

    @property
    def anonymous(self) -> bool:
        return not (self.service or self.account_id or self.arn)


def allows(
    statements: Iterable[Mapping[str, Any]],
    action: str,
    caller: Caller,
    *,
    source_arn: str | None = None,
    source_account: str | None = None,
    url_auth_type: str | None = None,
    event_source_token: str | None = None,
    invoked_via_function_url: bool | None = None,
) -> bool:
    """Whether a policy lets `caller` perform `action`: some Allow matches and no Deny does.

    Condition keys the request does not supply make their condition fail, as in IAM.
    """
    context: dict[str, str] = {}
    if source_arn is not None:
        context["aws:sourcearn"] = source_arn
    if source_account is not None:
        context["aws:sourceaccount"] = source_account
    if url_auth_type is not None:
        context["lambda:functionurlauthtype"] = url_auth_type
    if event_source_token is not None:
        context["lambda:eventsourcetoken"] = event_source_token
    if invoked_via_function_url is not None:
        context["lambda:invokedviafunctionurl"] = "true" if invoked_via_function_url else "false"
    allowed = False
    for statement in statements:
        if not (
            _action_matches(statement.get("Action"), action)
            and _principal_matches(statement.get("Principal"), caller)
            and _conditions_hold(statement.get("Condition") or {}, context)
        ):
            continue
        if statement.get("Effect") == "Deny":
            return False
        if statement.get("Effect") == "Allow":
            allowed = True
    return allowed


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value]


def _wildcard(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM wildcards: `*` is any run of characters, `?` any one character."""
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    flags = re.IGNORECASE if ignore_case else 0
    return re.fullmatch(regex, value, flags | re.DOTALL) is not None


def _arn_like(pattern: str, arn: str) -> bool:
    """ArnLike compares the six colon-separated parts one by one, so `*` stays inside a part."""
    if pattern == "*":
        return True
    pattern_parts = pattern.split(":", 5)
    arn_parts = arn.split(":", 5)
    if len(pattern_parts) != len(arn_parts):
        return False
    return all(_wildcard(p, a) for p, a in zip(pattern_parts, arn_parts, strict=True))


def _action_matches(actions: Any, action: str) -> bool:
    return any(_wildcard(pattern, action, ignore_case=True) for pattern in _as_list(actions))


def _principal_matches(principal: Any, caller: Caller) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        return False
    services = {service.lower() for service in _as_list(principal.get("Service"))}
    if caller.service and caller.service.lower() in services:
        return True
    return any(_identity_matches(identity, caller) for identity in _as_list(principal.get("AWS")))


def _identity_matches(identity: str, caller: Caller) -> bool:
    if caller.service or caller.anonymous:
        return False
    if identity == "*":
        return True
    account = _root_account(identity)
    if account is not None:
        return account == caller.account_id or account == _arn_account(caller.arn)
    return caller.arn is not None and identity == caller.arn


def _root_account(identity: str) -> str | None:
    if _ACCOUNT_ID.fullmatch(identity):
        return identity
    match = re.fullmatch(r"arn:aws[a-zA-Z-]*:iam::(\d{12}):root", identity)
    return match.group(1) if match else None


def _arn_account(arn: str | None) -> str | None:
    if not arn:
        return None
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 else None


def _conditions_hold(conditions: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    for operator, tests in conditions.items():
        for key, expected in tests.items():
            actual = context.get(key.lower())
            if actual is None or not _compare(operator, _as_list(expected), actual):
                return False
    return True


def _compare(operator: str, expected: list[str], actual: str) -> bool:
    match operator:
        case "StringEquals" | "ArnEquals":
            return actual in expected
        case "StringEqualsIgnoreCase":
            return actual.lower() in {value.lower() for value in expected}
        case "StringLike":
            return any(_wildcard(pattern, actual) for pattern in expected)
        case "ArnLike":
            return any(_arn_like(pattern, actual) for pattern in expected)
        case "StringNotEquals" | "ArnNotEquals":
            return actual not in expected
        case "StringNotLike":
            return not any(_wildcard(pattern, actual) for pattern in expected)
        case "ArnNotLike":
            return not any(_arn_like(pattern, actual) for pattern in expected)
        case "Bool":
            return actual.lower() in {value.lower() for value in expected}
    # An operator Lamina does not evaluate never grants access.
    return False
