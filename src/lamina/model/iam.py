"""IAM's and STS's entities as Lamina keeps them: roles, users, access keys, managed policies
and their versions, inline policies, attachments, and the temporary credentials STS issues.

Policy documents are kept as the JSON text the caller gave (after URL-decoding, as IAM
returns them), so GetRolePolicy and friends answer byte for byte what was put.
"""

from __future__ import annotations

from dataclasses import dataclass

# Whose inline policies and attachments: a role's or a user's.
ROLE = "role"
USER = "user"

ACTIVE = "Active"
INACTIVE = "Inactive"


@dataclass(frozen=True)
class Role:
    name: str
    role_id: str  # "AROA" + 17 upper-case letters and digits
    path: str  # "/" or "/a/b/"
    arn: str
    created: float  # epoch seconds
    trust_policy: str  # AssumeRolePolicyDocument
    description: str | None = None
    max_session_duration: int = 3600
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class User:
    name: str
    user_id: str  # "AIDA" + 17
    path: str
    arn: str
    created: float
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AccessKey:
    access_key_id: str  # "AKIA" + 16
    secret: str
    user_name: str
    status: str  # ACTIVE or INACTIVE
    created: float


@dataclass(frozen=True)
class ManagedPolicy:
    name: str
    policy_id: str  # "ANPA" + 17
    path: str
    arn: str  # arn:aws:iam::<account>:policy/<path><name>, or arn:aws:iam::aws:policy/...
    default_version: str  # "v1", "v2", ...
    created: float
    updated: float
    description: str | None = None
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PolicyVersion:
    policy_arn: str
    version_id: str  # "v1", ...
    document: str
    created: float


@dataclass(frozen=True)
class InlinePolicy:
    owner_kind: str  # ROLE or USER
    owner: str  # the role's or user's name
    name: str
    document: str


@dataclass(frozen=True)
class Session:
    """Temporary credentials (AssumeRole, GetSessionToken, a function's execution role)."""

    access_key_id: str  # "ASIA" + 16
    secret: str
    token: str
    expires: float  # epoch seconds
    account: str
    # Who acts with them: arn:aws:sts::<account>:assumed-role/<role>/<session>, or the user's
    # or root's ARN for GetSessionToken.
    principal_arn: str
    role_arn: str | None = None  # the role assumed, if any
    session_name: str | None = None
    session_policy: str | None = None  # AssumeRole's Policy, which narrows the role's
    # Issued while every call was verified (enforced mode). Development mode issues sessions
    # to any caller; enforced mode does not honour those.
    enforced: bool = False
