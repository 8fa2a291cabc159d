"""Execution-role credentials: the STS session each execution environment runs with.

On a cold start the data plane asks for a session of the function's execution role, named
after the function, as Lambda does (`arn:aws:sts::<account>:assumed-role/<role>/<function>`),
and gives it to the environment as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN.
The session is stored with STS's own (`lamina.control.sts`), so GetCallerIdentity and
enforcement find it like any AssumeRole session.

A session outlives its environment's use of it by design: environments are retired
`RETIRE_MARGIN_S` before their credentials expire (an invocation of at most 15 minutes that
starts just before then still ends with valid credentials), and a new environment gets a new
session. Expired sessions are purged now and then, off the invoke path.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from lamina.arns import Account
from lamina.control.sts import assumed_role_arn, new_session
from lamina.model.iam import Session
from lamina.store.protocols.iam import IamStore

# AWS's longest role session; Lamina's environments never live that long.
SESSION_LIFETIME_S = 12 * 3600
# More than the longest invocation (900 s), so a call started on an environment about to be
# retired still ends with valid credentials, and than the reaper's and reconciler's periods.
RETIRE_MARGIN_S = 30 * 60


class ExecutionRoleSessions:
    """Issues a function's execution-role sessions and purges expired ones."""

    def __init__(
        self,
        store: IamStore,
        account: Account,
        lifetime_s: float = SESSION_LIFETIME_S,
        clock: Callable[[], float] = time.time,
        *,
        enforced: bool = False,
    ) -> None:
        if lifetime_s <= RETIRE_MARGIN_S:
            raise ValueError(f"a session must outlive the retirement margin ({RETIRE_MARGIN_S} s)")
        self._store = store
        self._account = account
        self.lifetime_s = lifetime_s
        self._clock = clock
        self._enforced = enforced

    @property
    def environment_lifetime_s(self) -> float:
        """How long an environment may be handed out after its credentials were issued."""
        return self.lifetime_s - RETIRE_MARGIN_S

    def issue(self, function_name: str, role_arn: str) -> Session:
        """A new stored session of `role_arn`, named after the function. Blocking (a store
        write): call it off the event loop.

        The session acts in Lamina's account, the function's: a role ARN naming another
        account is not checked here (enforcement requires an existing role of the account)."""
        account = self._account.account_id
        # A role ARN's name is its last path segment (`role/a/b/name`).
        role_name = role_arn.rsplit("/", 1)[-1] or role_arn
        session = new_session(
            account=account,
            principal_arn=assumed_role_arn(account, role_name, function_name),
            expires=self._clock() + self.lifetime_s,
            role_arn=role_arn,
            session_name=function_name,
            enforced=self._enforced,
        )
        self._store.put_session(session)
        return session

    def purge(self) -> int:
        """Delete every expired session (of functions and of AssumeRole alike). Blocking."""
        return self._store.delete_expired_sessions(self._clock())
