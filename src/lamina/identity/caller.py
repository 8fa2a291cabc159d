"""Who signed a request, as enforced mode's verifier found out from the access key id."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class CallerKind(enum.Enum):
    ROOT = "root"  # the account's configured key pair
    USER = "user"  # an IAM user's access key, or its GetSessionToken session
    ASSUMED_ROLE = "assumed-role"  # AssumeRole's session credentials


@dataclass(frozen=True, slots=True)
class Caller:
    """The principal a verified request acts as."""

    arn: str  # arn:aws:iam::<account>:root | :user/<path><name> | arn:aws:sts::...:assumed-role/..
    account: str
    kind: CallerKind
    name: str = ""  # the user's or the role's name ("" for root)
    access_key_id: str = ""
    # AssumeRole's Policy (JSON text), which narrows what the role's policies grant.
    session_policy: str | None = None
    # The assumed role's ARN (with its path), for aws:PrincipalArn.
    role_arn: str | None = None

    @property
    def is_root(self) -> bool:
        return self.kind is CallerKind.ROOT
