"""The Principal / NotPrincipal element: who a resource or trust policy speaks about."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

ACCOUNT_ID = re.compile(r"^\d{12}$")
# IAM principals a policy may name (no wildcards but "*": IAM refuses `role/*` here).
_NAME = r"[\w+=,.@-]+"
_PATHED = rf"(?:{_NAME}/)*{_NAME}"
_IAM_ARN = re.compile(
    rf"^arn:aws[a-z-]*:iam::(\d{{12}}):(root|user/{_PATHED}|role/{_PATHED}|federated-user/{_NAME})$"
)
_STS_ARN = re.compile(
    rf"^arn:aws[a-z-]*:sts::(\d{{12}}):(assumed-role/{_NAME}/{_NAME}|federated-user/{_NAME})$"
)
# IAM shows a deleted role or user in a policy as its unique id (AROA.../AIDA...), and keeps
# accepting the policy.
_UNIQUE_ID = re.compile(r"^(AROA|AIDA)[A-Z0-9]{12,}$")
# `lambda.amazonaws.com`, `logs.us-east-1.amazonaws.com`, `ec2.amazonaws.com.cn`...: IAM
# refuses a bare `amazonaws.com` and anything that is not a service's host name.
_SERVICE = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)*\.amazonaws\.com(\.cn)?$")
_SESSION_ARN = re.compile(r"^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([^/]+)/(.+)$")
_ROLE_ARN = re.compile(r"^arn:(aws[a-z-]*):iam::(\d{12}):role/(?:.*/)?([^/]+)$")


class Reach(enum.IntEnum):
    """How closely a statement's principals name the caller, weakest first."""

    NONE = 0
    ACCOUNT = 1  # the caller's account: delegates to its identity policies
    ROLE = 2  # the role behind the caller's session: a session policy still narrows it
    EXACT = 3  # the caller itself (or everyone): grants on its own


def valid_aws_principal(value: str) -> bool:
    """Whether IAM accepts `value` under `"AWS"`."""
    return (
        value == "*"
        or _UNIQUE_ID.match(value) is not None
        or ACCOUNT_ID.match(value) is not None
        or _IAM_ARN.match(value) is not None
        or _STS_ARN.match(value) is not None
    )


def valid_service_principal(value: str) -> bool:
    """Whether IAM accepts `value` under `"Service"`."""
    return _SERVICE.match(value) is not None


def account_of(value: str) -> str | None:
    """The account an `"AWS"` account principal names (`123...` or its root ARN), else None."""
    if ACCOUNT_ID.match(value):
        return value
    match = _IAM_ARN.match(value)
    if match is not None and match.group(2) == "root":
        return match.group(1)
    return None


def role_of_session(principal_arn: str) -> tuple[str, str] | None:
    """(account, role name) of an assumed-role session ARN, else None."""
    match = _SESSION_ARN.match(principal_arn)
    return (match.group(2), match.group(3)) if match is not None else None


def role_identity(role_arn: str) -> tuple[str, str] | None:
    """(account, role name) of a role ARN (paths dropped, as session ARNs drop them)."""
    match = _ROLE_ARN.match(role_arn)
    return (match.group(2), match.group(3)) if match is not None else None


def is_service(principal: str) -> bool:
    """Whether a caller is an AWS service principal such as `lambda.amazonaws.com`."""
    return not principal.startswith("arn:") and "." in principal


@dataclass(frozen=True, slots=True)
class PrincipalSet:
    """The principals one statement names."""

    everyone: bool
    accounts: frozenset[str]
    arns: frozenset[str]
    roles: frozenset[tuple[str, str]]  # (account, role name) of each role ARN named
    services: frozenset[str]
    others: frozenset[str]  # Federated / CanonicalUser values, matched literally

    @classmethod
    def build(
        cls,
        everyone: bool,
        aws: Iterable[str] = (),
        services: Iterable[str] = (),
        others: Iterable[str] = (),
    ) -> PrincipalSet:
        """Sort `"AWS"` values into accounts, ARNs and roles."""
        accounts: set[str] = set()
        arns: set[str] = set()
        roles: set[tuple[str, str]] = set()
        for value in aws:
            if value == "*":
                everyone = True
                continue
            account = account_of(value)
            if account is not None:
                accounts.add(account)
                continue
            arns.add(value)
            role = role_identity(value)
            if role is not None:
                roles.add(role)
        return cls(
            everyone,
            frozenset(accounts),
            frozenset(arns),
            frozenset(roles),
            frozenset(services),
            frozenset(others),
        )

    def reach(self, principal_arn: str, principal_account: str) -> Reach:
        """How closely these principals name the caller (for Principal)."""
        if self.everyone:
            return Reach.EXACT
        if is_service(principal_arn):
            # A service, or a federation provider such as cognito-identity.amazonaws.com.
            named = principal_arn in self.services or principal_arn in self.others
            return Reach.EXACT if named else Reach.NONE
        if principal_arn in self.arns or principal_arn in self.others:
            return Reach.EXACT
        if self.roles:
            role = role_of_session(principal_arn)
            if role is not None and role in self.roles:
                return Reach.ROLE
        if principal_account in self.accounts:
            return Reach.ACCOUNT
        return Reach.NONE

    def excludes(self, principal_arn: str, principal_account: str) -> bool:
        """Whether NotPrincipal leaves the caller out.

        IAM checks every principal the caller stands for (the session, its role, the
        account), so all of them must be listed for the caller to be left out.
        """
        if self.everyone:
            return True
        if is_service(principal_arn):
            return principal_arn in self.services or principal_arn in self.others
        chain = [principal_arn in self.arns, principal_account in self.accounts]
        role = role_of_session(principal_arn)
        if role is not None:
            chain.append(role in self.roles)
        if principal_arn.endswith(":root"):
            chain = [principal_account in self.accounts or principal_arn in self.arns]
        return all(chain)
