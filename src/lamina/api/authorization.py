"""Enforced mode: each operation of each front as the IAM action it is and the resource it
acts on, decided by `lamina.control.access.Authority` before its handler runs.

Actions are `<service>:<Operation>` (Lambda's Invoke and InvokeWithResponseStream are
`lambda:InvokeFunction`); resources are the ARN AWS names in its refusal, or `*` for calls
on no single resource (List*, Create* of a new resource, account settings).
CreateFunction and UpdateFunctionConfiguration also need a role that exists and trusts
Lambda, and `iam:PassRole` on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from lamina.arns import Account, parse_function_ref
from lamina.control.access import Authority, Question
from lamina.control.iam import IamService, compile_policy
from lamina.errors import InvalidParameterValue
from lamina.identity.caller import Caller, CallerKind
from lamina.identity.policy import AuthRequest, PolicyKind, evaluate
from lamina.identity.sigv4 import Signer

# The IAM service prefix of a front, by the name its requests are signed with.
_PREFIXES = {"monitoring": "cloudwatch"}
_LAMBDA_ACTIONS = {"Invoke": "InvokeFunction", "InvokeWithResponseStream": "InvokeFunction"}
# Calls AWS answers for any caller, whatever its policies say.
_UNCHECKED = {("sts", "GetCallerIdentity"), ("sts", "GetSessionToken")}
_PASSES_ROLE = {"CreateFunction", "UpdateFunctionConfiguration"}
# Operations AWS authorises on `*` although they name a function (in a condition key).
_ON_NO_FUNCTION = {"CreateEventSourceMapping", "ListEventSourceMappings"}
LAMBDA_PRINCIPAL = "lambda.amazonaws.com"
ROLE_NOT_ASSUMABLE = "The role defined for the function cannot be assumed by Lambda."

Context = dict[str, str | Sequence[str]]


class PolicyAuthorizer:
    """The `Authorizer` every front's pipeline calls in enforced mode."""

    def __init__(self, authority: Authority, iam: IamService, account: Account) -> None:
        self._authority = authority
        self._iam = iam
        self._account = account
        self._resources: dict[str, Callable[[str, Mapping[str, Any], Caller, Context], Question]]
        self._resources = {
            "lambda": self._lambda,
            "logs": self._logs,
            "events": self._events,
            "kms": self._kms,
            "iam": self._iam_question,
            "sts": self._sts,
        }
        self._second = 0
        self._now = ""

    def authorize(
        self,
        service: str,
        operation: str,
        params: Mapping[str, Any],
        signer: Signer,
        source_ip: str | None,
    ) -> None:
        prefix = _PREFIXES.get(service, service)
        caller = signer.caller
        if prefix == "lambda" and operation in _PASSES_ROLE and params.get("Role"):
            self._check_role(caller, params["Role"], signer, source_ip)
        if caller.is_root and caller.account == self._account.account_id:
            return  # the account's root may do everything in it (checked before any lookup)
        if (prefix, operation) in _UNCHECKED:
            return
        context = self._context(caller, signer, source_ip)
        build = self._resources.get(prefix, _anything)
        self._authority.check(caller, build(f"{prefix}:{operation}", params, caller, context))

    def _context(self, caller: Caller, signer: Signer, source_ip: str | None) -> Context:
        now = int(time.time())
        if now != self._second:
            self._now = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self._second = now
        context: Context = {
            "aws:CurrentTime": self._now,
            "aws:EpochTime": str(now),
            "aws:RequestedRegion": signer.region,
            "aws:SecureTransport": "false",
        }
        if source_ip:
            context["aws:SourceIp"] = source_ip
        if caller.kind is CallerKind.USER:
            context["aws:username"] = caller.name
        return context

    # ------------------------------------------------------------------ PassRole

    def _check_role(self, caller: Caller, role_arn: str, signer: Signer, ip: str | None) -> None:
        """The function's role must exist and trust Lambda; the caller must be allowed to
        pass it (iam:PassRole)."""
        name = role_arn.rsplit("/", 1)[-1]
        role = self._iam.store.get_role(name) if role_arn.startswith("arn:") else None
        if role is None or role.arn.lower() != role_arn.lower():
            raise InvalidParameterValue(ROLE_NOT_ASSUMABLE)
        trust = compile_policy(role.trust_policy, PolicyKind.TRUST)
        as_lambda = AuthRequest(
            principal_arn=LAMBDA_PRINCIPAL,
            principal_account="",
            action="sts:AssumeRole",
            resource=role.arn,
            resource_account=self._account.account_id,
        )
        if not evaluate(as_lambda, (), trust):
            raise InvalidParameterValue(ROLE_NOT_ASSUMABLE)
        if caller.is_root and caller.account == self._account.account_id:
            return
        context = self._context(caller, signer, ip)
        self._authority.check(caller, Question("iam:PassRole", role.arn, context))

    # ------------------------------------------------------------------ resources by service

    def _lambda(
        self, action: str, params: Mapping[str, Any], caller: Caller, context: Context
    ) -> Question:
        operation = action.split(":", 1)[1]
        action = f"lambda:{_LAMBDA_ACTIONS.get(operation, operation)}"
        account = self._account
        if "UUID" in params:
            mapping = f"arn:aws:lambda:{account.region}:{account.account_id}:"
            return Question(action, f"{mapping}event-source-mapping:{params['UUID']}", context)
        if operation in _ON_NO_FUNCTION:
            if isinstance(params.get("FunctionName"), str):
                ref = parse_function_ref(params["FunctionName"], account, operation)
                context["lambda:FunctionArn"] = account.function_arn(ref.name, ref.qualifier)
            return Question(action, "*", context)
        if isinstance(params.get("FunctionName"), str):
            ref = parse_function_ref(params["FunctionName"], account, operation)
            qualifier = params.get("Qualifier") or ref.qualifier
            context["lambda:FunctionArn"] = account.function_arn(ref.name)
            if operation == "AddPermission" and params.get("Principal"):
                context["lambda:Principal"] = params["Principal"]
            if params.get("AuthType"):
                context["lambda:FunctionUrlAuthType"] = params["AuthType"]
            if params.get("Layers"):
                context["lambda:Layer"] = list(params["Layers"])
            return Question(
                action,
                account.function_arn(ref.name, qualifier),
                context,
                function=(ref.name, qualifier),
            )
        if "LayerName" in params:
            layer = str(params["LayerName"])
            arn = layer if layer.startswith("arn:") else account.layer_arn(layer)
            version = params.get("VersionNumber")
            return Question(action, f"{arn}:{version}" if version else arn, context)
        for member in ("CodeSigningConfigArn", "Resource", "Arn"):
            if isinstance(params.get(member), str):
                return Question(action, params[member], context)
        return Question(action, "*", context)

    def _logs(
        self, action: str, params: Mapping[str, Any], caller: Caller, context: Context
    ) -> Question:
        group = params.get("logGroupName") or params.get("logGroupIdentifier")
        if not isinstance(group, str):
            return Question(action, "*", context)
        account = self._account
        arn = (
            group
            if group.startswith("arn:")
            else f"arn:aws:logs:{account.region}:{account.account_id}:log-group:{group}"
        )
        stream = params.get("logStreamName")
        return Question(action, f"{arn}:log-stream:{stream}" if stream else arn, context)

    def _events(
        self, action: str, params: Mapping[str, Any], caller: Caller, context: Context
    ) -> Question:
        account = self._account
        base = f"arn:aws:events:{account.region}:{account.account_id}:"
        bus = params.get("EventBusName")
        bus_name = bus.rsplit("/", 1)[-1] if isinstance(bus, str) else "default"
        # PutTargets, RemoveTargets and ListTargetsByRule name it `Rule`; PutRule, DeleteRule,
        # DescribeRule, EnableRule and DisableRule `Name`.
        rule = params.get("Rule") or (params.get("Name") if action.endswith("Rule") else None)
        if isinstance(rule, str):
            path = rule if bus_name == "default" else f"{bus_name}/{rule}"
            return Question(action, f"{base}rule/{path}", context)
        if action == "events:PutEvents":
            return Question(action, f"{base}event-bus/default", context)
        return Question(action, "*", context)

    def _kms(
        self, action: str, params: Mapping[str, Any], caller: Caller, context: Context
    ) -> Question:
        key = params.get("KeyId")
        if not isinstance(key, str):
            return Question(action, "*", context)
        if key.startswith("arn:"):
            return Question(action, key, context)
        account = self._account
        kind = "" if key.startswith("alias/") else "key/"
        return Question(
            action, f"arn:aws:kms:{account.region}:{account.account_id}:{kind}{key}", context
        )

    def _iam_question(
        self, action: str, params: Mapping[str, Any], caller: Caller, context: Context
    ) -> Question:
        account = self._account.account_id
        store = self._iam.store
        if isinstance(params.get("RoleName"), str):
            role = store.get_role(params["RoleName"])
            arn = role.arn if role else f"arn:aws:iam::{account}:role/{params['RoleName']}"
            return Question(action, arn, context)
        if isinstance(params.get("UserName"), str):
            user = store.get_user(params["UserName"])
            arn = user.arn if user else f"arn:aws:iam::{account}:user/{params['UserName']}"
            return Question(action, arn, context)
        if isinstance(params.get("PolicyArn"), str):
            return Question(action, params["PolicyArn"], context)
        if caller.kind is CallerKind.USER and action in _SELF_SERVICE:
            # Without UserName these act on the caller's own user.
            return Question(action, caller.arn, context)
        if action == "iam:CreatePolicy" and isinstance(params.get("PolicyName"), str):
            path = params.get("Path") or "/"
            return Question(
                action, f"arn:aws:iam::{account}:policy{path}{params['PolicyName']}", context
            )
        return Question(action, "*", context)

    def _sts(
        self, action: str, params: Mapping[str, Any], caller: Caller, context: Context
    ) -> Question:
        role_arn = params.get("RoleArn")
        if action != "sts:AssumeRole" or not isinstance(role_arn, str):
            return Question(action, "*", context)
        role = self._iam.store.get_role(role_arn.rsplit("/", 1)[-1])
        if role is None or role.arn.lower() != role_arn.lower():
            return Question(action, role_arn, context)
        # The trust policy is AssumeRole's resource policy: naming the caller suffices;
        # naming its account leaves the decision to the caller's own policies.
        trust = compile_policy(role.trust_policy, PolicyKind.TRUST)
        return Question(action, role.arn, context, resource_policy=trust)


_SELF_SERVICE = {
    "iam:GetUser",
    "iam:CreateAccessKey",
    "iam:ListAccessKeys",
    "iam:DeleteAccessKey",
    "iam:UpdateAccessKey",
}


def _anything(action: str, params: Mapping[str, Any], caller: Caller, context: Context) -> Question:
    return Question(action, "*", context)
