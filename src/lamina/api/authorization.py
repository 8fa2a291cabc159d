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
from lamina.control.file_systems import file_system_arn
from lamina.control.iam import IamService, compile_policy
from lamina.control.kms import MalformedKeyPolicy
from lamina.control.networks import NetworkCatalog
from lamina.control.role_permissions import RolePermissions
from lamina.errors import InvalidParameterValue
from lamina.identity.caller import Caller, CallerKind
from lamina.identity.policy import AuthRequest, MalformedPolicy, PolicyKind, evaluate
from lamina.identity.sigv4 import Signer
from lamina.store.protocols.kms import KmsKeyStore
from lamina.store.sealing import SealBroken, blob_key_id

# The IAM service prefix of a front, by the name its requests are signed with.
_PREFIXES = {"monitoring": "cloudwatch"}
_LAMBDA_ACTIONS = {"Invoke": "InvokeFunction", "InvokeWithResponseStream": "InvokeFunction"}
# Calls AWS answers for any caller, whatever its policies say.
_UNCHECKED = {("sts", "GetCallerIdentity"), ("sts", "GetSessionToken")}
_PASSES_ROLE = {"CreateFunction", "UpdateFunctionConfiguration"}
_SETS_KEY_POLICY = {"CreateKey", "PutKeyPolicy"}
LOCKOUT = "The new key policy will not allow you to update the key policy in the future."
# Operations AWS authorises on `*` although they name a function (in a condition key).
_ON_NO_FUNCTION = {"CreateEventSourceMapping", "ListEventSourceMappings"}
LAMBDA_PRINCIPAL = "lambda.amazonaws.com"
ROLE_NOT_ASSUMABLE = "The role defined for the function cannot be assumed by Lambda."

Context = dict[str, str | Sequence[str]]


class PolicyAuthorizer:
    """The `Authorizer` every front's pipeline calls in enforced mode."""

    def __init__(
        self,
        authority: Authority,
        iam: IamService,
        account: Account,
        keys: KmsKeyStore | None = None,
        networks: NetworkCatalog | None = None,
    ) -> None:
        self._authority = authority
        self._networks = networks or NetworkCatalog()
        self._iam = iam
        self._account = account
        self._keys = keys
        self._roles = RolePermissions(authority, account)
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
        if prefix == "lambda" and operation in _PASSES_ROLE:
            if params.get("Role"):
                self._check_role(caller, params["Role"], signer, source_ip)
            self._check_dead_letter(params)
            self._check_network(params)
        if prefix == "kms" and operation in _SETS_KEY_POLICY:
            self._check_lockout(caller, operation, params, signer, source_ip)
        own_root = caller.is_root and caller.account == self._account.account_id
        if own_root and prefix != "kms":
            return  # the account's root may do everything in it (checked before any lookup)
        if (prefix, operation) in _UNCHECKED:
            return
        context = self._context(caller, signer, source_ip)
        build = self._resources.get(prefix, _anything)
        question = build(f"{prefix}:{operation}", params, caller, context)
        if own_root and question.key_policy is None:
            return
        self._authority.check(caller, question)

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

    def _check_dead_letter(self, params: Mapping[str, Any]) -> None:
        """The function's role must be allowed to write to its DeadLetterConfig target."""
        dead_letter = params.get("DeadLetterConfig")
        target = dead_letter.get("TargetArn") if isinstance(dead_letter, Mapping) else None
        name = params.get("FunctionName")
        if not target or not isinstance(target, str) or not isinstance(name, str):
            return
        function = parse_function_ref(name, self._account).name
        role = params.get("Role")
        if not isinstance(role, str):
            record = self._authority.functions.get(function)
            if record is None:
                return  # the handler answers ResourceNotFound
            role = record.latest.role
        if role:
            self._roles.check_dead_letter(role, function, target)

    def _check_network(self, params: Mapping[str, Any]) -> None:
        """The function's role must be allowed to manage network interfaces in its VPC and
        to mount its file systems: checked when the request sets either, or sets a new role
        for a function that has them."""
        name = params.get("FunctionName")
        if not isinstance(name, str):
            return
        vpc_config = params.get("VpcConfig")
        file_systems = params.get("FileSystemConfigs")
        role = params.get("Role")
        if vpc_config is None and file_systems is None and not isinstance(role, str):
            return
        function = parse_function_ref(name, self._account).name
        current = self._authority.functions.get(function)
        if current is not None:
            if vpc_config is None:
                vpc_config = current.latest.vpc_config
            if file_systems is None:
                file_systems = current.latest.file_system_configs
            if not isinstance(role, str):
                role = current.latest.role
        if not isinstance(role, str) or not role:
            return  # CreateFunction without a role: the handler refuses it
        if isinstance(vpc_config, Mapping) and vpc_config.get("SubnetIds"):
            self._roles.check_vpc(role, function)
        if isinstance(file_systems, Sequence):
            arns = [
                file_system_arn(self._networks, self._account, config["Arn"])
                for config in file_systems
                if isinstance(config, Mapping) and isinstance(config.get("Arn"), str)
            ]
            # Unknown access points are the handler's to refuse, with AWS's EFS error.
            self._roles.check_file_systems(role, function, [arn for arn in arns if arn])

    def _check_lockout(
        self,
        caller: Caller,
        operation: str,
        params: Mapping[str, Any],
        signer: Signer,
        source_ip: str | None,
    ) -> None:
        """KMS's policy lockout safety check: a new key policy must still let its author
        change it, unless the caller says BypassPolicyLockoutSafetyCheck."""
        policy = params.get("Policy")
        if not isinstance(policy, str) or params.get("BypassPolicyLockoutSafetyCheck") is True:
            return
        try:
            compiled = self._authority.key_policy(policy)
        except MalformedPolicy:
            return  # the handler answers MalformedPolicyDocumentException
        key = params.get("KeyId") if operation == "PutKeyPolicy" else None
        resource = self._kms("kms:PutKeyPolicy", {"KeyId": key}, caller, {}).resource
        question = Question(
            "kms:PutKeyPolicy",
            resource,
            self._context(caller, signer, source_ip),
            key_policy=compiled,
        )
        if not self._authority.decide(caller, question):
            raise MalformedKeyPolicy(LOCKOUT)

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
        """A call on a key is decided by its key policy (see `evaluate_key_policy`); the key
        of a Decrypt without KeyId is the one its ciphertext names, as on AWS."""
        key_ref = params.get("KeyId")
        if not isinstance(key_ref, str) and action == "kms:Decrypt":
            key_ref = _blob_key(params.get("CiphertextBlob"))
        if not isinstance(key_ref, str):
            return Question(action, "*", context)
        account = self._account
        if key_ref.startswith("arn:"):
            arn = key_ref
        else:
            kind = "" if key_ref.startswith("alias/") else "key/"
            arn = f"arn:aws:kms:{account.region}:{account.account_id}:{kind}{key_ref}"
        key = self._keys.get_key(arn.rsplit("/", 1)[-1]) if self._keys is not None else None
        if key is None or key.arn != arn:
            # No such key: the handler answers NotFound to a caller allowed to ask.
            return Question(action, arn, context)
        return Question(action, arn, context, key_policy=self._authority.key_policy(key.policy))

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


def _blob_key(blob: object) -> str | None:
    """The key id a KMS ciphertext blob names (None when it is no blob Lamina made)."""
    if not isinstance(blob, bytes | bytearray):
        return None
    try:
        return blob_key_id(bytes(blob))
    except SealBroken:
        return None
