"""STS: who a caller is, and the temporary credentials AssumeRole and GetSessionToken issue.

The caller is read from the access key id the request was signed with (in enforced mode the
signature was checked against that key first, and the call authorised, by the API layer):
- twelve digits: the root of that account (how AWS test suites name several accounts);
- an IAM user's key (`AKIA…` in the store): that user;
- an unexpired session's key (`ASIA…`): the session's principal (an assumed role, or the
  user or root that called GetSessionToken);
- anything else: the root of Lamina's own account.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from lamina.control.iam import IamService, compile_policy, new_id, new_secret
from lamina.errors import AccessDenied, ValidationError
from lamina.identity.policy import AuthRequest, PolicyKind, evaluate
from lamina.model.iam import ACTIVE, Role, Session, User

# GetSessionToken's defaults and the root's ceiling (STS API reference).
SESSION_TOKEN_DEFAULT = 43_200
ROOT_SESSION_MAX = 3_600
ASSUME_ROLE_DEFAULT = 3_600
# A role assumed with a role's credentials ("role chaining") lasts at most an hour.
CHAINED_SESSION_MAX = 3_600

_ROLE_ARN = re.compile(r"^arn:aws:iam::(?P<account>\d{12}):role/(?:.*/)?(?P<name>[\w+=,.@-]+)$")
# Not an account id: the resource side of the trust question (see `_trusts`).
_TRUST_FRAME = "trust-policy"
_USER_ARN = re.compile(r"^arn:aws:iam::\d{12}:user/(?:.*/)?(?P<name>[^/]+)$")


@dataclass(frozen=True)
class Caller:
    """Who signed a request."""

    arn: str
    account: str
    # GetCallerIdentity's UserId: the account for root, the user's id, or `AROA…:<session>`.
    user_id: str
    user: User | None = None
    session: Session | None = None

    @property
    def is_root(self) -> bool:
        return self.arn.endswith(":root")


@dataclass(frozen=True)
class AssumedRole:
    session: Session
    role: Role
    assumed_role_id: str  # `AROA…:<session name>`


def _token() -> str:
    """An opaque session token, of the length and alphabet of AWS's."""
    return base64.b64encode(secrets.token_bytes(264)).decode()


def new_session(
    account: str,
    principal_arn: str,
    expires: float,
    role_arn: str | None = None,
    session_name: str | None = None,
    session_policy: str | None = None,
    *,
    enforced: bool,
) -> Session:
    """Fresh temporary credentials (an `ASIA…` key, its secret and token) for a principal.
    Not stored: the caller keeps them (`IamStore.put_session`). `enforced`: whether calls
    are verified now (see `Session.enforced`)."""
    return Session(
        access_key_id=new_id("ASIA", 16),
        secret=new_secret(),
        token=_token(),
        expires=expires,
        account=account,
        principal_arn=principal_arn,
        role_arn=role_arn,
        session_name=session_name,
        session_policy=session_policy,
        enforced=enforced,
    )


def assumed_role_arn(account: str, role_name: str, session_name: str) -> str:
    """The ARN a role's session acts as."""
    return f"arn:aws:sts::{account}:assumed-role/{role_name}/{session_name}"


class StsService:
    def __init__(
        self, iam: IamService, clock: Callable[[], float] = time.time, *, enforced: bool = False
    ) -> None:
        """`enforced`: whether the server verifies every call (its sessions say so)."""
        self._iam = iam
        self._store = iam.store
        self._clock = clock
        self._enforced = enforced

    @property
    def account_id(self) -> str:
        return self._iam.account_id

    def root(self, account: str | None = None) -> Caller:
        account = account or self.account_id
        return Caller(f"arn:aws:iam::{account}:root", account, account)

    def caller(self, access_key_id: str | None) -> Caller:
        if not access_key_id:
            return self.root()
        if len(access_key_id) == 12 and access_key_id.isdigit():
            return self.root(access_key_id)
        key = self._store.get_access_key(access_key_id)
        if key is not None and key.status == ACTIVE:
            user = self._store.get_user(key.user_name)
            if user is not None:
                return Caller(user.arn, self.account_id, user.user_id, user=user)
        session = self._store.get_session(access_key_id)
        if session is not None and session.expires > self._clock():
            return self._session_caller(session)
        return self.root()

    def _session_caller(self, session: Session) -> Caller:
        user_id = session.account
        if session.role_arn is not None:
            role = self._role_of(session.role_arn)
            role_id = role.role_id if role is not None else "AROA"
            user_id = f"{role_id}:{session.session_name}"
        elif (found := _USER_ARN.match(session.principal_arn)) is not None:
            user = self._store.get_user(found["name"])
            user_id = user.user_id if user is not None else user_id
        return Caller(session.principal_arn, session.account, user_id, session=session)

    def _role_of(self, arn: str) -> Role | None:
        found = _ROLE_ARN.match(arn)
        if found is None or found["account"] != self.account_id:
            return None
        role = self._store.get_role(found["name"])
        return role if role is not None and role.arn.lower() == arn.lower() else None

    # ------------------------------------------------------------------ AssumeRole

    def assume_role(
        self,
        caller: Caller,
        role_arn: str,
        session_name: str,
        duration: int | None = None,
        session_policy: str | None = None,
    ) -> AssumedRole:
        role = self._role_of(role_arn)
        # A missing role is refused like an untrusting one: STS does not say which it was.
        if role is None or not self._trusts(role, caller):
            raise AccessDenied(
                f"User: {caller.arn} is not authorized to perform: sts:AssumeRole on "
                f"resource: {role_arn}"
            )
        chained = caller.session is not None and caller.session.role_arn is not None
        seconds = duration if duration is not None else ASSUME_ROLE_DEFAULT
        if chained and seconds > CHAINED_SESSION_MAX:
            raise ValidationError(
                "The requested DurationSeconds exceeds the 1 hour session limit for roles "
                "assumed by role chaining."
            )
        if seconds > role.max_session_duration:
            raise ValidationError(
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
            )
        if session_policy is not None:
            compile_policy(session_policy, PolicyKind.IDENTITY)
        session = new_session(
            account=self.account_id,
            principal_arn=assumed_role_arn(self.account_id, role.name, session_name),
            expires=self._clock() + seconds,
            role_arn=role.arn,
            session_name=session_name,
            session_policy=session_policy,
            enforced=self._enforced,
        )
        self._store.put_session(session)
        return AssumedRole(session, role, f"{role.role_id}:{session_name}")

    def _trusts(self, role: Role, caller: Caller) -> bool:
        """Whether the role's trust policy lets the caller assume it.

        The trust policy must name the caller (its ARN, its role, its account or everyone) in
        an Allow, with no Deny (enforced mode also authorises sts:AssumeRole against the
        caller's identity policies before this runs). The evaluator is asked as
        for a cross-account call by a caller whose own policies allow everything, which is
        exactly that question: the identity side passes, and the resource side (the trust
        policy) must reach the caller. The caller's own identity policies (needed on AWS
        when the trust policy names only the account) are enforcement's part, next.
        """
        trust = compile_policy(role.trust_policy, PolicyKind.TRUST)
        now = datetime.fromtimestamp(self._clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        request = AuthRequest(
            principal_arn=caller.arn,
            principal_account=caller.account,
            action="sts:AssumeRole",
            resource=role.arn,
            resource_account=_TRUST_FRAME,
            context={"aws:CurrentTime": now},
        )
        return evaluate(request, (), trust, root=True).allowed

    # ------------------------------------------------------------------ GetSessionToken

    def session_token(self, caller: Caller, duration: int | None = None) -> Session:
        if caller.session is not None:
            raise AccessDenied("Cannot call GetSessionToken with session credentials")
        seconds = duration if duration is not None else SESSION_TOKEN_DEFAULT
        if caller.is_root:
            # AWS shortens a root session to an hour rather than refusing a longer one.
            seconds = min(seconds, ROOT_SESSION_MAX)
        session = new_session(
            account=caller.account,
            principal_arn=caller.arn,
            expires=self._clock() + seconds,
            enforced=self._enforced,
        )
        self._store.put_session(session)
        return session
