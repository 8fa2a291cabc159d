"""Building and taking apart Lambda ARNs and the name forms clients may send."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lamina.errors import AccessDenied, InvalidParameterValue, ResourceNotFound

_FUNCTION_REF = re.compile(
    r"^(?:arn:(?P<partition>aws[a-zA-Z-]*):lambda:(?P<region>[a-z0-9-]+):)?"
    r"(?:(?P<account>\d{12}):)?(?:function:)?(?P<name>[a-zA-Z0-9_.-]+)"
    r"(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]+))?$"
)
_LAYER_ARN = re.compile(
    r"^arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):layer:"
    r"(?P<name>[a-zA-Z0-9_-]+)(?::(?P<version>[0-9]+))?$"
)


@dataclass(frozen=True)
class Account:
    """The account and region this Lamina instance speaks for."""

    account_id: str
    region: str

    def function_arn(self, name: str, qualifier: str | None = None) -> str:
        arn = f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}"
        return f"{arn}:{qualifier}" if qualifier else arn

    def layer_arn(self, name: str, version: int | None = None) -> str:
        arn = f"arn:aws:lambda:{self.region}:{self.account_id}:layer:{name}"
        return f"{arn}:{version}" if version is not None else arn

    def code_signing_config_arn(self, config_id: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:code-signing-config:{config_id}"


@dataclass(frozen=True)
class FunctionRef:
    """A function named by a client, with the qualifier it carried, if any."""

    name: str
    qualifier: str | None


# IAM actions whose name is not the operation's (the rest are `lambda:<Operation>`).
_IAM_ACTIONS = {
    "Invoke": "InvokeFunction",
    "InvokeWithResponseStream": "InvokeFunction",
}


def access_denied(account: Account, action: str, resource: str) -> AccessDenied:
    """AWS's refusal of a resource in another account that no resource policy opens.

    The sentence names the account's root whoever called, also in enforced mode, where AWS
    names the calling user or role (this layer does not know the caller).
    CreateFunction's refusal carries no message at all on AWS.
    """
    if action == "CreateFunction":
        return AccessDenied("")
    action = _IAM_ACTIONS.get(action, action)
    return AccessDenied(
        f"User: arn:aws:iam::{account.account_id}:root is not authorized to perform: "
        f"lambda:{action} on resource: {resource} because no resource-based policy allows "
        f"the lambda:{action} action"
    )


def other_region(region: str, account: Account) -> ResourceNotFound:
    return ResourceNotFound(
        f"Functions from '{region}' are not reachable in this region ('{account.region}')"
    )


def parse_function_ref(value: str, account: Account, action: str = "Invoke") -> FunctionRef:
    """Accept a bare name, a partial ARN or a full ARN, each with an optional qualifier.

    `action` is the operation being called, named in the refusal of another account's ARN.
    Names longer than Lambda allows are not refused here: no function has one, so the
    lookup answers `Function not found` as AWS does (CreateFunction checks the length).
    """
    match = _FUNCTION_REF.match(value)
    if match is None or (value.startswith("arn:") and ":function:" not in value):
        raise InvalidParameterValue(f"Invalid function name or ARN: {value}")
    if match["account"] and match["account"] != account.account_id:
        resource = value
        if not value.startswith("arn:"):
            region = match["region"] or account.region
            resource = f"arn:aws:lambda:{region}:{match['account']}:function:{match['name']}"
            if match["qualifier"]:
                resource += f":{match['qualifier']}"
        raise access_denied(account, action, resource)
    if match["region"] and match["region"] != account.region:
        raise other_region(match["region"], account)
    return FunctionRef(match["name"], match["qualifier"])


@dataclass(frozen=True)
class LayerVersionRef:
    account_id: str
    region: str
    name: str
    version: int | None


def parse_layer_arn(value: str) -> LayerVersionRef | None:
    match = _LAYER_ARN.match(value)
    if match is None:
        return None
    version = match["version"]
    return LayerVersionRef(
        match["account"], match["region"], match["name"], int(version) if version else None
    )


def layer_name_from(value: str, account: Account) -> str:
    """LayerName parameters may be a name or a layer ARN (without a version)."""
    if not value.startswith("arn:"):
        return value
    ref = parse_layer_arn(value)
    if ref is None or ref.version is not None:
        raise InvalidParameterValue(f"Invalid layer name or ARN: {value}")
    if ref.account_id != account.account_id or ref.region != account.region:
        raise ResourceNotFound(f"Layer not found: {value}")
    return ref.name
