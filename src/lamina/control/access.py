"""Enforced mode's decision for one call: the caller's identity policies, the resource's
policy, AWS's evaluation, and AWS's refusal.

Compiled policies are cached: a caller's identity policies while the IAM store's change
stamp stands still, a function's resource policy while the function store's does. So an
authorised call costs a dictionary lookup or two and the evaluation itself; and when no
policy involved reads a condition key, the decision itself is remembered under both stamps
(it then depends only on who asks what on which resource).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lamina.constants import LATEST
from lamina.control.iam import IamService
from lamina.control.policies import POLICY_KIND, policy_json
from lamina.errors import AccessDenied
from lamina.identity.caller import Caller, CallerKind
from lamina.identity.policy import (
    AuthRequest,
    Decision,
    MalformedPolicy,
    Policy,
    PolicyCache,
    PolicyKind,
    denial_message,
    evaluate,
    evaluate_key_policy,
)
from lamina.model.functions import Policy as FunctionPolicy
from lamina.model.iam import ROLE, USER
from lamina.store.protocols.functions import FunctionStore

log = logging.getLogger("lamina.access")

_CACHE_MAX = 4096
_DecisionKey = tuple[Caller, str, str, tuple[str, str | None] | None]


@dataclass(frozen=True, slots=True)
class Question:
    """What a call asks: an action on a resource, with its condition keys."""

    action: str
    resource: str
    context: Mapping[str, str | Sequence[str]]
    # The function (name, qualifier) whose resource policy applies, if any.
    function: tuple[str, str | None] | None = None
    # A resource policy the caller already holds (a role's trust policy for AssumeRole).
    resource_policy: Policy | None = None
    # A KMS key's policy: the only way to a key, which binds the account's root user too.
    key_policy: Policy | None = None


class Authority:
    """Decides calls for one account's callers."""

    def __init__(self, iam: IamService, functions: FunctionStore) -> None:
        self._iam = iam
        self._store = iam.store
        self._functions = functions
        self._compiled = PolicyCache(_CACHE_MAX)
        # (kind, name) -> (IAM stamp, the identity policies); (name, qualifier) ->
        # (functions stamp, the resource policy).
        self._identities: dict[tuple[str, str], tuple[int, tuple[Policy, ...]]] = {}
        self._resources: dict[tuple[str, str | None], tuple[int, Policy | None]] = {}
        # (caller, action, resource, function) -> ((IAM stamp, functions stamp), decision).
        self._decisions: dict[_DecisionKey, tuple[tuple[int, int], Decision]] = {}
        self._lock = threading.Lock()

    def check(self, caller: Caller, question: Question) -> None:
        """Raise AccessDenied with AWS's sentence unless the caller may do this."""
        own_root = caller.is_root and caller.account == self._iam.account_id
        if own_root and question.key_policy is None:
            # The root user of the account may do everything in it.
            return
        decision = self.decide(caller, question)
        if not decision:
            raise AccessDenied(
                denial_message(caller.arn, question.action, question.resource, decision)
            )

    @property
    def iam(self) -> IamService:
        return self._iam

    @property
    def functions(self) -> FunctionStore:
        return self._functions

    def decide(self, caller: Caller, question: Question) -> Decision:
        remembered = question.resource_policy is None and question.key_policy is None
        stamp = self._store.change_stamp()
        if remembered:
            stamps = (stamp, self._functions.change_stamp())
            key = (caller, question.action, question.resource, question.function)
            found = self._decisions.get(key)
            if found is not None and found[0] == stamps:
                return found[1]
        identity = self.identity_policies(caller, stamp)
        session = (
            self._compiled.get(caller.session_policy, PolicyKind.IDENTITY)
            if caller.session_policy is not None
            else None
        )
        resource = question.resource_policy
        if resource is None and question.function is not None:
            resource = self.function_policy(*question.function)
        decision = self._evaluate(caller, question, identity, resource, session)
        if remembered and not any(
            policy.reads_keys for policy in (*identity, resource, session) if policy is not None
        ):
            with self._lock:
                if len(self._decisions) >= _CACHE_MAX:
                    self._decisions.clear()
                self._decisions[key] = (stamps, decision)
        return decision

    def _evaluate(
        self,
        caller: Caller,
        question: Question,
        identity: tuple[Policy, ...],
        resource: Policy | None,
        session: Policy | None,
    ) -> Decision:
        context = question.context
        if caller.role_arn is not None and "aws:PrincipalArn" not in context:
            # The role's own ARN (with its path) is the session's aws:PrincipalArn.
            context = {**context, "aws:PrincipalArn": caller.role_arn}
        request = AuthRequest(
            principal_arn=caller.arn,
            principal_account=caller.account,
            action=question.action,
            resource=question.resource,
            resource_account=self._iam.account_id,
            context=context,
        )
        if question.key_policy is not None:
            return evaluate_key_policy(
                request, identity, question.key_policy, session, root=caller.is_root
            )
        return evaluate(request, identity, resource, session, root=caller.is_root)

    def identity_policies(self, caller: Caller, stamp: int | None = None) -> tuple[Policy, ...]:
        """The caller's compiled identity policies; `stamp` is the IAM store's change stamp
        when the caller has just read it."""
        if caller.kind is CallerKind.ROOT:
            return ()
        owner = (ROLE if caller.kind is CallerKind.ASSUMED_ROLE else USER, caller.name)
        if stamp is None:
            stamp = self._store.change_stamp()
        cached = self._identities.get(owner)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        policies = tuple(self._load_identity(*owner))
        with self._lock:
            if len(self._identities) >= _CACHE_MAX:
                self._identities.clear()
            self._identities[owner] = (stamp, policies)
        return policies

    def _load_identity(self, kind: str, owner: str) -> list[Policy]:
        found = [
            self._compiled.get(inline.document, PolicyKind.IDENTITY)
            for inline in self._store.inline_policies(kind, owner)
        ]
        for arn in self._store.attached(kind, owner):
            document = self._iam.default_document(arn)
            if document is not None:
                # The ARN goes with it: AWS names the managed policy that explicitly denies.
                found.append(self._compiled.get(document, PolicyKind.IDENTITY, arn))
        return found

    def key_policy(self, document: str) -> Policy:
        """A KMS key's policy, compiled (PutKeyPolicy and CreateKey checked it)."""
        return self._compiled.get(document, PolicyKind.RESOURCE)

    def function_policy(self, name: str, qualifier: str | None) -> Policy | None:
        """The resource policy of `name[:qualifier]` (the unqualified function's for
        $LATEST or no qualifier), compiled."""
        key = (name, None if qualifier in (None, LATEST) else qualifier)
        stamp = self._functions.change_stamp()
        cached = self._resources.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        doc = self._functions.get_child(name, POLICY_KIND, key[1] or LATEST)
        policy: Policy | None = None
        if doc is not None:
            stored = FunctionPolicy.from_doc(doc)
            if stored.statements:
                try:
                    policy = self._compiled.get(policy_json(stored), PolicyKind.RESOURCE)
                except MalformedPolicy as error:
                    # Written by AddPermission, which checks what it writes; a statement the
                    # evaluator cannot read grants nothing rather than failing every call.
                    log.warning("function %s: resource policy not evaluated: %s", name, error)
        with self._lock:
            if len(self._resources) >= _CACHE_MAX:
                self._resources.clear()
            self._resources[key] = (stamp, policy)
        return policy
