"""What `evaluate` decides, and the sentence AWS uses to refuse."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Denial(enum.Enum):
    """Why a request is refused, as the tail of AWS's AccessDenied sentence."""

    NO_IDENTITY_ALLOW = "because no identity-based policy allows the {action} action"
    NO_RESOURCE_ALLOW = "because no resource-based policy allows the {action} action"
    NO_SESSION_ALLOW = "because no session policy allows the {action} action"
    IDENTITY_DENY = "with an explicit deny in an identity-based policy"
    RESOURCE_DENY = "with an explicit deny in a resource-based policy"
    SESSION_DENY = "with an explicit deny in a session policy"

    @property
    def explicit(self) -> bool:
        """Whether a Deny statement matched (rather than nothing allowing)."""
        return self in (Denial.IDENTITY_DENY, Denial.RESOURCE_DENY, Denial.SESSION_DENY)


@dataclass(frozen=True, slots=True)
class Decision:
    """Allowed, or refused for a reason."""

    allowed: bool
    denial: Denial | None = None
    policy_arn: str | None = None  # the managed policy whose Deny refused the request

    def __bool__(self) -> bool:
        return self.allowed

    def because(self, action: str) -> str:
        """The reason clause of AWS's sentence ("because no identity-based policy allows...")."""
        if self.denial is None:
            return ""
        clause = self.denial.value.format(action=action)
        return clause if self.policy_arn is None else f"{clause}: {self.policy_arn}"


ALLOWED = Decision(True)


def denial_message(principal_arn: str, action: str, resource: str, decision: Decision) -> str:
    """AWS's full AccessDenied sentence for a refused request."""
    return (
        f"User: {principal_arn} is not authorized to perform: {action} "
        f"on resource: {resource} {decision.because(action)}"
    )
