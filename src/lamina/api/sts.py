"""STS's API (query protocol, botocore's "sts" model): GetCallerIdentity, AssumeRole and
GetSessionToken, over `lamina.control.sts`."""

from __future__ import annotations

from typing import Any

import botocore.session

from lamina.api.context import Handler
from lamina.api.identity_query import IdentityQueryService, current_access_key
from lamina.audit.trail import AuditTrail
from lamina.control.iam import policy_size
from lamina.control.sts import StsService
from lamina.identity.sigv4 import SigV4Verifier
from lamina.model.iam import Session

SESSION_POLICY_MAX = 2048


def credentials_view(session: Session) -> dict[str, Any]:
    return {
        "AccessKeyId": session.access_key_id,
        "SecretAccessKey": session.secret,
        "SessionToken": session.token,
        "Expiration": session.expires,
    }


def _packed_size(policy: str | None) -> int | None:
    """The session policy's share of its allowance, in percent, given only with a policy.
    AWS packs (compresses) the policy before measuring it; Lamina's figure is an estimate
    from its size against the 2,048 characters the model allows."""
    if policy is None:
        return None
    return max(1, -(-100 * policy_size(policy) // SESSION_POLICY_MAX))


def operations(sts: StsService) -> dict[str, Handler]:
    def get_caller_identity(params: dict[str, Any]) -> dict[str, Any]:
        caller = sts.caller(current_access_key.get())
        return {"UserId": caller.user_id, "Account": caller.account, "Arn": caller.arn}

    def assume_role(params: dict[str, Any]) -> dict[str, Any]:
        assumed = sts.assume_role(
            sts.caller(current_access_key.get()),
            params["RoleArn"],
            params["RoleSessionName"],
            params.get("DurationSeconds"),
            params.get("Policy"),
        )
        return {
            "Credentials": credentials_view(assumed.session),
            "AssumedRoleUser": {
                "AssumedRoleId": assumed.assumed_role_id,
                "Arn": assumed.session.principal_arn,
            },
            "PackedPolicySize": _packed_size(assumed.session.session_policy),
        }

    def get_session_token(params: dict[str, Any]) -> dict[str, Any]:
        session = sts.session_token(
            sts.caller(current_access_key.get()), params.get("DurationSeconds")
        )
        return {"Credentials": credentials_view(session)}

    return {
        "GetCallerIdentity": get_caller_identity,
        "AssumeRole": assume_role,
        "GetSessionToken": get_session_token,
    }


def build_sts_api(
    sts: StsService, verifier: SigV4Verifier | None, audit: AuditTrail | None = None
) -> IdentityQueryService:
    model = botocore.session.get_session().get_service_model("sts")
    return IdentityQueryService(model, operations(sts), verifier, audit)
