"""Whether a rule may invoke its Lambda target, and which function and qualifier that is.

As on AWS, the function's resource-based policy must allow the principal
`events.amazonaws.com` to call `lambda:InvokeFunction` (the console, SAM and Terraform add
such a statement, usually with the rule's ARN as `SourceArn`; so does `lamina schedule`).
When it does not, or the function is gone, the invocation is not made and counts as a
FailedInvocation of the rule, as EventBridge counts it.
"""

from __future__ import annotations

from typing import Protocol

from lamina.arns import Account, parse_function_ref
from lamina.control.functions import FunctionService
from lamina.control.policies import Caller, PolicyService, allows
from lamina.errors import LaminaError

EVENTS_PRINCIPAL = "events.amazonaws.com"
INVOKE_ACTION = "lambda:InvokeFunction"


class Undeliverable(Exception):
    """The target cannot be invoked; the message says why and what to do about it."""


class TargetResolver(Protocol):
    def resolve(self, target_arn: str, rule_arn: str) -> tuple[str, str | None]:
        """(function name, qualifier) to invoke; raises Undeliverable."""
        ...


class LambdaTargets:
    """Resolves targets against the function store and checks their resource policies."""

    def __init__(self, functions: FunctionService, policies: PolicyService, account: Account):
        self._functions = functions
        self._policies = policies
        self._account = account

    def resolve(self, target_arn: str, rule_arn: str) -> tuple[str, str | None]:
        try:
            ref = parse_function_ref(target_arn, self._account)
            name = self._functions.resolve(ref).record.name
        except LaminaError as error:
            raise Undeliverable(error.message) from None
        statements = self._policies.statements_for(name, ref.qualifier)
        allowed = allows(
            statements,
            INVOKE_ACTION,
            Caller(service=EVENTS_PRINCIPAL),
            source_arn=rule_arn,
            source_account=self._account.account_id,
        )
        if not allowed:
            qualifier = f" --qualifier {ref.qualifier}" if ref.qualifier else ""
            raise Undeliverable(
                f"the resource-based policy of {target_arn} does not allow "
                f"{EVENTS_PRINCIPAL} to invoke it; grant it with `aws lambda add-permission "
                f"--function-name {name}{qualifier} --statement-id <id> --action {INVOKE_ACTION} "
                f"--principal {EVENTS_PRINCIPAL} --source-arn {rule_arn}`"
            )
        return name, ref.qualifier
