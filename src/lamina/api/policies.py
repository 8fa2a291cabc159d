"""Handlers: AddPermission, RemovePermission, GetPolicy."""

from __future__ import annotations

from typing import Any

import orjson

from lamina.api.context import ApiContext, Handler
from lamina.control.policies import Permission, PolicyService, policy_json


def permission_from(params: dict[str, Any]) -> Permission:
    return Permission(
        statement_id=params["StatementId"],
        action=params["Action"],
        principal=params["Principal"],
        source_arn=params.get("SourceArn"),
        source_account=params.get("SourceAccount"),
        principal_org_id=params.get("PrincipalOrgID"),
        function_url_auth_type=params.get("FunctionUrlAuthType"),
        event_source_token=params.get("EventSourceToken"),
        invoked_via_function_url=bool(params.get("InvokedViaFunctionUrl")),
    )


def operations(ctx: ApiContext) -> dict[str, Handler]:
    policies = PolicyService(ctx.domain, ctx.functions)

    ref = ctx.function_ref

    def add_permission(params: dict[str, Any]) -> dict[str, Any]:
        statement = policies.add_permission(
            ref(params), params.get("Qualifier"), permission_from(params), params.get("RevisionId")
        )
        return {"Statement": orjson.dumps(statement).decode()}

    def remove_permission(params: dict[str, Any]) -> None:
        policies.remove_permission(
            ref(params), params.get("Qualifier"), params["StatementId"], params.get("RevisionId")
        )

    def get_policy(params: dict[str, Any]) -> dict[str, Any]:
        policy = policies.get_policy(ref(params), params.get("Qualifier"))
        return {"Policy": policy_json(policy), "RevisionId": policy.revision_id}

    return {
        "AddPermission": add_permission,
        "RemovePermission": remove_permission,
        "GetPolicy": get_policy,
    }
