"""`evaluate`: AWS's decision for one request against the policies that apply to it.

The documented logic, restricted to the policy types Lamina has:
1. An explicit Deny in any applicable policy refuses the request.
2. Same account: an Allow in an identity policy or in the resource policy suffices. A
   resource policy grants on its own only when it names the caller (or everyone); naming the
   account delegates to the account's identity policies.
3. Cross-account: the caller's identity policies and the resource policy must both allow
   (the resource policy may name the caller's account).
4. A session policy (AssumeRole's Policy) narrows what the identity policies grant, and what
   a resource policy grants to the session's role; not what it grants to the session itself
   (its assumed-role ARN) or to everyone (`*`).
5. The root user of an account needs no identity policy: it may do everything its account
   may do, short of an explicit deny.
A service principal (`lambda.amazonaws.com`) has no identity policies: the resource (or trust)
policy alone decides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from lamina.identity.policy.conditions import Context
from lamina.identity.policy.decision import ALLOWED, Decision, Denial
from lamina.identity.policy.document import Policy
from lamina.identity.policy.principals import Reach, is_service, role_of_session

_NO_KEYS: Context = {}
_DENIED = {denial: Decision(False, denial) for denial in Denial}


@dataclass(frozen=True)
class AuthRequest:
    """One call to authorise: who, what, on which resource, in which context."""

    principal_arn: str  # user/role/session/root ARN, or a service principal
    principal_account: str  # "" for a service principal
    action: str  # "lambda:InvokeFunction"
    resource: str  # the resource ARN, or "*" for calls on no resource
    resource_account: str = ""  # "" means the caller's own account
    context: Mapping[str, str | Sequence[str]] = field(default_factory=dict)

    @cached_property
    def keys(self) -> Context:
        """The condition keys, built on first use: most statements (no Condition, no policy
        variable) never read them, and a warm authorised call skips the work."""
        return _condition_keys(self)

    @property
    def service(self) -> bool:
        """Whether the caller is an AWS service principal."""
        return is_service(self.principal_arn)

    @property
    def cross_account(self) -> bool:
        """Whether the resource lives in another account than the caller's."""
        return bool(self.resource_account) and self.resource_account != self.principal_account


def _condition_keys(request: AuthRequest) -> dict[str, tuple[str, ...]]:
    """The context with lower-cased names, plus the keys IAM always knows about a caller."""
    keys: dict[str, tuple[str, ...]] = {}
    if not request.service:
        role = role_of_session(request.principal_arn)
        principal = request.principal_arn
        if role is not None:
            # aws:PrincipalArn of a session is its role's ARN (a caller knowing the role's
            # path passes the exact ARN in the context).
            partition = request.principal_arn.split(":", 2)[1]
            principal = f"arn:{partition}:iam::{role[0]}:role/{role[1]}"
        keys["aws:principalarn"] = (principal,)
        keys["aws:principalaccount"] = (request.principal_account,)
    if request.resource_account:
        keys["aws:resourceaccount"] = (request.resource_account,)
    for name, value in request.context.items():
        keys[name.lower()] = (value,) if isinstance(value, str) else tuple(value)
    return keys


def _identity_effects(
    policies: Sequence[Policy], request: AuthRequest
) -> tuple[bool, Policy | None]:
    """(some statement allows, the policy with a Deny that applies) over identity policies."""
    allows = False
    action, resource = request.action, request.resource
    for policy in policies:
        for statement in policy.statements:
            if statement.allow and allows:
                continue
            keys = request.keys if statement.reads_keys else _NO_KEYS
            if not statement.covers(action, resource, keys):
                continue
            if not all(test.holds(keys) for test in statement.conditions):
                continue
            if not statement.allow:
                return allows, policy
            allows = True
    return allows, None


def _resource_effects(policy: Policy, request: AuthRequest) -> tuple[Reach, bool]:
    """(how closely an Allow names the caller, whether a Deny applies) for a resource policy."""
    reach = Reach.NONE
    action, resource = request.action, request.resource
    arn, account = request.principal_arn, request.principal_account
    for statement in policy.statements:
        if statement.allow and reach is Reach.EXACT:
            continue
        keys = request.keys if statement.reads_keys else _NO_KEYS
        if not statement.covers(action, resource, keys):
            continue
        principals = statement.principals
        if principals is None:
            continue
        if statement.not_principal:
            found = Reach.NONE if principals.excludes(arn, account) else Reach.EXACT
        else:
            found = principals.reach(arn, account)
        if found is Reach.NONE:
            continue
        if not all(test.holds(keys) for test in statement.conditions):
            continue
        if not statement.allow:
            return reach, True
        reach = max(reach, found)
    return reach, False


def _explicit(denial: Denial, policy: Policy, request: AuthRequest) -> Decision:
    # AWS names the denying policy only to callers of the same account.
    if policy.arn is None or request.cross_account:
        return _DENIED[denial]
    return Decision(False, denial, policy.arn)


def _effects(
    request: AuthRequest,
    identity: Sequence[Policy],
    resource: Policy | None,
    session: Policy | None,
) -> Decision | tuple[bool, Reach, bool]:
    """An explicit Deny's refusal (identity, then resource, then session policies), or what
    the policies grant: (an identity policy allows, how closely the resource policy names the
    caller, the session policy allows)."""
    identity_allows, denying = _identity_effects(identity, request)
    if denying is not None:
        return _explicit(Denial.IDENTITY_DENY, denying, request)
    reach, resource_denies = (
        _resource_effects(resource, request) if resource is not None else (Reach.NONE, False)
    )
    if resource_denies:
        return _DENIED[Denial.RESOURCE_DENY]
    session_allows = True
    if session is not None:
        session_allows, denying = _identity_effects((session,), request)
        if denying is not None:
            return _explicit(Denial.SESSION_DENY, denying, request)
    return identity_allows, reach, session_allows


def evaluate(
    request: AuthRequest,
    identity: Sequence[Policy],
    resource: Policy | None,
    session: Policy | None = None,
    root: bool = False,
) -> Decision:
    """Whether AWS would allow `request`, and if not the reason AWS gives.

    `identity` are the caller's identity policies (inline and attached), `resource` the
    resource's policy (or a role's trust policy for sts:AssumeRole), `session` the session
    policy of AssumeRole credentials, `root` whether the caller is its account's root user
    (also inferred from a `:root` principal ARN).
    """
    effects = _effects(request, identity, resource, session)
    if isinstance(effects, Decision):
        return effects
    identity_allows, reach, session_allows = effects
    if request.service:
        return ALLOWED if reach is Reach.EXACT else _DENIED[Denial.NO_RESOURCE_ALLOW]
    # The root user needs no identity policy, whether or not the caller said it was root.
    identity_side = root or identity_allows or request.principal_arn.endswith(":root")
    if not request.cross_account:
        if reach is Reach.EXACT or (session_allows and (identity_side or reach is Reach.ROLE)):
            return ALLOWED
        if identity_side or reach is Reach.ROLE:
            return _DENIED[Denial.NO_SESSION_ALLOW]
        return _DENIED[Denial.NO_IDENTITY_ALLOW]
    if not identity_side:
        return _DENIED[Denial.NO_IDENTITY_ALLOW]
    if not session_allows:
        return _DENIED[Denial.NO_SESSION_ALLOW]
    if reach is Reach.NONE:
        return _DENIED[Denial.NO_RESOURCE_ALLOW]
    return ALLOWED


def evaluate_key_policy(
    request: AuthRequest,
    identity: Sequence[Policy],
    key_policy: Policy,
    session: Policy | None = None,
    root: bool = False,
) -> Decision:
    """KMS's decision for a request on a key: the key policy must allow it.

    Unlike other resources, a KMS key is reachable only through its key policy: an identity
    policy counts only where the key policy names the caller's account (the default key
    policy does, delegating to IAM). So the account's root user, too, is refused by a key
    policy that names neither it nor its account.
    """
    effects = _effects(request, identity, key_policy, session)
    if isinstance(effects, Decision):
        return effects
    identity_allows, reach, session_allows = effects
    if reach is Reach.NONE:
        return _DENIED[Denial.NO_RESOURCE_ALLOW]
    if reach is Reach.EXACT:
        return ALLOWED
    if reach is Reach.ACCOUNT and not (
        root or identity_allows or request.principal_arn.endswith(":root")
    ):
        return _DENIED[Denial.NO_IDENTITY_ALLOW]
    return ALLOWED if session_allows else _DENIED[Denial.NO_SESSION_ALLOW]
