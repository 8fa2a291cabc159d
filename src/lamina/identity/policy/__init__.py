"""IAM's policy language: validate and compile documents, and decide requests as AWS does.

    policy = parse_policy(text, PolicyKind.IDENTITY)          # MalformedPolicy(message)
    decision = evaluate(AuthRequest(...), [policy], resource_policy, session_policy)
    if not decision:
        raise AccessDenied(denial_message(caller_arn, action, resource, decision))

Parse once and keep the compiled `Policy` (or use a `PolicyCache`): evaluation is then a few
microseconds.
"""

from lamina.identity.policy.decision import ALLOWED, Decision, Denial, denial_message
from lamina.identity.policy.document import MalformedPolicy, Policy, PolicyKind, Statement
from lamina.identity.policy.evaluation import AuthRequest, evaluate, evaluate_key_policy
from lamina.identity.policy.messages import invalid_principal
from lamina.identity.policy.parsing import PolicyCache, parse_policy

__all__ = [
    "ALLOWED",
    "AuthRequest",
    "Decision",
    "Denial",
    "MalformedPolicy",
    "Policy",
    "PolicyCache",
    "PolicyKind",
    "Statement",
    "denial_message",
    "evaluate",
    "evaluate_key_policy",
    "invalid_principal",
    "parse_policy",
]
