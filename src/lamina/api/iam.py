"""IAM's API (query protocol, botocore's "iam" model): roles, users, access keys, inline and
managed policies, attachments.

Handlers turn members into `lamina.control.iam` calls and entities into AWS's shapes.
Policy documents go out URL-encoded, as IAM sends them (SDKs decode them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import botocore.session

from lamina.api.context import Handler
from lamina.api.identity_query import IdentityQueryService, current_access_key
from lamina.audit.trail import AuditTrail
from lamina.control.iam import SCOPE_ALL, IamService, tag_pairs
from lamina.control.paging import decode_marker, encode_marker
from lamina.control.sts import StsService
from lamina.errors import InvalidParameterValue, ValidationError
from lamina.identity.sigv4 import SigV4Verifier
from lamina.model.iam import ROLE, USER, AccessKey, ManagedPolicy, PolicyVersion, Role, User

T = TypeVar("T")

# IAM's lists answer 100 items a page unless MaxItems says otherwise.
DEFAULT_MAX_ITEMS = 100


def encode_document(document: str) -> str:
    return quote(document, safe="")


def _tags(tags: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in tags]


def role_view(role: Role, full: bool = True) -> dict[str, Any]:
    view: dict[str, Any] = {
        "Path": role.path,
        "RoleName": role.name,
        "RoleId": role.role_id,
        "Arn": role.arn,
        "CreateDate": role.created,
        "AssumeRolePolicyDocument": encode_document(role.trust_policy),
        "MaxSessionDuration": role.max_session_duration,
    }
    if role.description is not None:
        view["Description"] = role.description
    if full:
        if role.tags:
            view["Tags"] = _tags(role.tags)
        view["RoleLastUsed"] = {}
    return view


def user_view(user: User) -> dict[str, Any]:
    view: dict[str, Any] = {
        "Path": user.path,
        "UserName": user.name,
        "UserId": user.user_id,
        "Arn": user.arn,
        "CreateDate": user.created,
    }
    if user.tags:
        view["Tags"] = _tags(user.tags)
    return view


def policy_view(policy: ManagedPolicy, attachments: int) -> dict[str, Any]:
    view: dict[str, Any] = {
        "PolicyName": policy.name,
        "PolicyId": policy.policy_id,
        "Arn": policy.arn,
        "Path": policy.path,
        "DefaultVersionId": policy.default_version,
        "AttachmentCount": attachments,
        "PermissionsBoundaryUsageCount": 0,
        "IsAttachable": True,
        "CreateDate": policy.created,
        "UpdateDate": policy.updated,
    }
    if policy.description is not None:
        view["Description"] = policy.description
    if policy.tags:
        view["Tags"] = _tags(policy.tags)
    return view


def version_view(version: PolicyVersion, default: str) -> dict[str, Any]:
    return {
        "Document": encode_document(version.document),
        "VersionId": version.version_id,
        "IsDefaultVersion": version.version_id == default,
        "CreateDate": version.created,
    }


def key_view(key: AccessKey, with_secret: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "UserName": key.user_name,
        "AccessKeyId": key.access_key_id,
        "Status": key.status,
        "CreateDate": key.created,
    }
    if with_secret:
        view["SecretAccessKey"] = key.secret
    return view


def paged(
    items: Sequence[T], params: dict[str, Any], position: Callable[[T], str]
) -> tuple[list[T], dict[str, Any]]:
    """One page of a sorted list by `Marker`/`MaxItems`, and IsTruncated (with the Marker
    to resume from when it is true)."""
    try:
        after = decode_marker(params.get("Marker"))
    except InvalidParameterValue:
        # Unconfirmed against AWS: its words for a Marker it did not hand out.
        raise ValidationError("Invalid Marker.") from None
    start = 0
    if after is not None:
        start = next((i + 1 for i, item in enumerate(items) if position(item) == after), len(items))
    limit = params.get("MaxItems") or DEFAULT_MAX_ITEMS
    page = list(items[start : start + limit])
    if start + limit < len(items):
        return page, {"IsTruncated": True, "Marker": encode_marker(position(page[-1]))}
    return page, {"IsTruncated": False}


def _caller_user(sts: StsService, params: dict[str, Any]) -> str:
    """The UserName member, or the calling user's name when it is left out."""
    name: str | None = params.get("UserName")
    if name:
        return name
    caller = sts.caller(current_access_key.get())
    if caller.user is None:
        raise ValidationError("Must specify userName when calling with non-User credentials")
    return caller.user.name


def operations(iam: IamService, sts: StsService) -> dict[str, Handler]:
    # Blocking handlers: they read and write the store, so they run in a worker thread.
    return {
        **_role_operations(iam),
        **_user_operations(iam, sts),
        **_owned_policy_operations(iam, ROLE, "RoleName"),
        **_owned_policy_operations(iam, USER, "UserName"),
        **_managed_policy_operations(iam),
    }


def _role_operations(iam: IamService) -> dict[str, Handler]:
    def create_role(params: dict[str, Any]) -> dict[str, Any]:
        role = iam.create_role(
            params["RoleName"],
            params["AssumeRolePolicyDocument"],
            path=params.get("Path") or "/",
            description=params.get("Description"),
            max_session_duration=params.get("MaxSessionDuration") or 3600,
            tags=tag_pairs(params.get("Tags")),
        )
        return {"Role": role_view(role)}

    def get_role(params: dict[str, Any]) -> dict[str, Any]:
        return {"Role": role_view(iam.get_role(params["RoleName"]))}

    def list_roles(params: dict[str, Any]) -> dict[str, Any]:
        roles, more = paged(iam.roles(params.get("PathPrefix")), params, lambda r: r.name)
        return {"Roles": [role_view(role, full=False) for role in roles], **more}

    def delete_role(params: dict[str, Any]) -> None:
        iam.delete_role(params["RoleName"])

    def update_assume_role_policy(params: dict[str, Any]) -> None:
        iam.update_trust_policy(params["RoleName"], params["PolicyDocument"])

    def update_role(params: dict[str, Any]) -> dict[str, Any]:
        iam.update_role(
            params["RoleName"], params.get("Description"), params.get("MaxSessionDuration")
        )
        return {}

    return {
        "CreateRole": create_role,
        "GetRole": get_role,
        "ListRoles": list_roles,
        "DeleteRole": delete_role,
        "UpdateAssumeRolePolicy": update_assume_role_policy,
        "UpdateRole": update_role,
    }


def _user_operations(iam: IamService, sts: StsService) -> dict[str, Handler]:
    def create_user(params: dict[str, Any]) -> dict[str, Any]:
        user = iam.create_user(
            params["UserName"],
            path=params.get("Path") or "/",
            tags=tag_pairs(params.get("Tags")),
        )
        return {"User": user_view(user)}

    def get_user(params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("UserName")
        if name:
            return {"User": user_view(iam.get_user(name))}
        caller = sts.caller(current_access_key.get())
        if caller.user is not None:
            return {"User": user_view(caller.user)}
        # The root (and, unconfirmed, a session) is answered as the account itself.
        return {"User": {"UserId": caller.user_id, "Arn": caller.arn}}

    def list_users(params: dict[str, Any]) -> dict[str, Any]:
        users, more = paged(iam.users(params.get("PathPrefix")), params, lambda u: u.name)
        return {"Users": [user_view(user) for user in users], **more}

    def delete_user(params: dict[str, Any]) -> None:
        iam.delete_user(params["UserName"])

    def create_access_key(params: dict[str, Any]) -> dict[str, Any]:
        key = iam.create_access_key(_caller_user(sts, params))
        return {"AccessKey": key_view(key, with_secret=True)}

    def list_access_keys(params: dict[str, Any]) -> dict[str, Any]:
        keys, more = paged(
            iam.access_keys(_caller_user(sts, params)), params, lambda k: k.access_key_id
        )
        return {"AccessKeyMetadata": [key_view(key) for key in keys], **more}

    def delete_access_key(params: dict[str, Any]) -> None:
        iam.delete_access_key(_caller_user(sts, params), params["AccessKeyId"])

    def update_access_key(params: dict[str, Any]) -> None:
        iam.update_access_key(_caller_user(sts, params), params["AccessKeyId"], params["Status"])

    return {
        "CreateUser": create_user,
        "GetUser": get_user,
        "ListUsers": list_users,
        "DeleteUser": delete_user,
        "CreateAccessKey": create_access_key,
        "ListAccessKeys": list_access_keys,
        "DeleteAccessKey": delete_access_key,
        "UpdateAccessKey": update_access_key,
    }


def _owned_policy_operations(iam: IamService, kind: str, owner_member: str) -> dict[str, Handler]:
    """A role's or a user's inline policies and attachments."""
    noun = "Role" if kind == ROLE else "User"

    def put(params: dict[str, Any]) -> None:
        iam.put_inline_policy(
            kind, params[owner_member], params["PolicyName"], params["PolicyDocument"]
        )

    def get(params: dict[str, Any]) -> dict[str, Any]:
        owner = iam.owner_name(kind, params[owner_member])
        policy = iam.get_inline_policy(kind, owner, params["PolicyName"])
        return {
            owner_member: owner,
            "PolicyName": policy.name,
            "PolicyDocument": encode_document(policy.document),
        }

    def delete(params: dict[str, Any]) -> None:
        iam.delete_inline_policy(kind, params[owner_member], params["PolicyName"])

    def names(params: dict[str, Any]) -> dict[str, Any]:
        found, more = paged(
            iam.inline_policy_names(kind, params[owner_member]), params, lambda n: n
        )
        return {"PolicyNames": found, **more}

    def attach(params: dict[str, Any]) -> None:
        iam.attach(kind, params[owner_member], params["PolicyArn"])

    def detach(params: dict[str, Any]) -> None:
        iam.detach(kind, params[owner_member], params["PolicyArn"])

    def attached(params: dict[str, Any]) -> dict[str, Any]:
        found, more = paged(
            iam.attached(kind, params[owner_member], params.get("PathPrefix")),
            params,
            lambda p: p.arn,
        )
        listed = [{"PolicyName": p.name, "PolicyArn": p.arn} for p in found]
        return {"AttachedPolicies": listed, **more}

    return {
        f"Put{noun}Policy": put,
        f"Get{noun}Policy": get,
        f"Delete{noun}Policy": delete,
        f"List{noun}Policies": names,
        f"Attach{noun}Policy": attach,
        f"Detach{noun}Policy": detach,
        f"ListAttached{noun}Policies": attached,
    }


def _managed_policy_operations(iam: IamService) -> dict[str, Handler]:
    def create_policy(params: dict[str, Any]) -> dict[str, Any]:
        policy = iam.create_policy(
            params["PolicyName"],
            params["PolicyDocument"],
            path=params.get("Path") or "/",
            description=params.get("Description"),
            tags=tag_pairs(params.get("Tags")),
        )
        return {"Policy": policy_view(policy, 0)}

    def get_policy(params: dict[str, Any]) -> dict[str, Any]:
        policy = iam.get_policy(params["PolicyArn"])
        return {"Policy": policy_view(policy, iam.attachment_count(policy.arn))}

    def list_policies(params: dict[str, Any]) -> dict[str, Any]:
        found = iam.policies(
            params.get("Scope") or SCOPE_ALL,
            bool(params.get("OnlyAttached")),
            params.get("PathPrefix"),
        )
        page, more = paged(found, params, lambda p: p.arn)
        views = []
        for policy in page:
            view = policy_view(policy, iam.attachment_count(policy.arn))
            view.pop("Description", None)  # ListPolicies leaves descriptions out
            views.append(view)
        return {"Policies": views, **more}

    def delete_policy(params: dict[str, Any]) -> None:
        iam.delete_policy(params["PolicyArn"])

    def get_policy_version(params: dict[str, Any]) -> dict[str, Any]:
        arn, version_id = params["PolicyArn"], params["VersionId"]
        version = iam.get_policy_version(arn, version_id)
        default = iam.get_policy(arn).default_version
        return {"PolicyVersion": version_view(version, default)}

    def create_policy_version(params: dict[str, Any]) -> dict[str, Any]:
        arn = params["PolicyArn"]
        version = iam.create_policy_version(
            arn, params["PolicyDocument"], bool(params.get("SetAsDefault"))
        )
        view = version_view(version, iam.get_policy(arn).default_version)
        view.pop("Document")  # CreatePolicyVersion does not echo the document
        return {"PolicyVersion": view}

    def list_policy_versions(params: dict[str, Any]) -> dict[str, Any]:
        arn = params["PolicyArn"]
        default = iam.get_policy(arn).default_version
        # Newest first, as IAM lists them.
        found = list(reversed(iam.versions(arn)))
        page, more = paged(found, params, lambda v: v.version_id)
        views = [version_view(version, default) for version in page]
        for view in views:
            view.pop("Document")
        return {"Versions": views, **more}

    def delete_policy_version(params: dict[str, Any]) -> None:
        iam.delete_policy_version(params["PolicyArn"], params["VersionId"])

    def set_default_policy_version(params: dict[str, Any]) -> None:
        iam.set_default_version(params["PolicyArn"], params["VersionId"])

    return {
        "CreatePolicy": create_policy,
        "GetPolicy": get_policy,
        "ListPolicies": list_policies,
        "DeletePolicy": delete_policy,
        "GetPolicyVersion": get_policy_version,
        "CreatePolicyVersion": create_policy_version,
        "ListPolicyVersions": list_policy_versions,
        "DeletePolicyVersion": delete_policy_version,
        "SetDefaultPolicyVersion": set_default_policy_version,
    }


def build_iam_api(
    iam: IamService,
    sts: StsService,
    verifier: SigV4Verifier | None,
    audit: AuditTrail | None = None,
) -> IdentityQueryService:
    model = botocore.session.get_session().get_service_model("iam")
    return IdentityQueryService(model, operations(iam, sts), verifier, audit)
