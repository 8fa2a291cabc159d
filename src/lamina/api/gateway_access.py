"""Enforced mode's authorisation of the calls the service gateway forwards.

A call for an upstream acts there with the operator's credentials, so Lamina decides it
first, as AWS would: the caller's identity policies (and session policy) must allow each
action the call needs on the resources it names, through the same `Authority` as Lamina's
own APIs. A call whose operation cannot be identified is refused: nothing can be allowed
about it. The account's root key may do anything, as on Lamina's own APIs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from lamina.aws.upstream_actions import Call, OperationIndex, Unidentified, permissions
from lamina.aws.upstreams import Service
from lamina.control.access import Authority, Question
from lamina.errors import AccessDenied
from lamina.identity.caller import Caller, CallerKind
from lamina.identity.sigv4 import Signer


class GatewayAccess:
    """Decides forwarded calls for one account's callers."""

    def __init__(self, authority: Authority, operations: OperationIndex | None = None) -> None:
        self._authority = authority
        self._operations = operations or OperationIndex()

    def prepare(self, service: Service) -> None:
        """Loads what deciding the service's calls takes (blocking: off the event loop)."""
        self._operations.prepare(service)

    def unchecked(self, caller: Caller) -> bool:
        """The account's root user: allowed everything, its calls need no identifying."""
        return caller.is_root and caller.account == self._authority.iam.account_id

    def operation(self, service: Service, call: Call, caller: Caller) -> tuple[str, dict[str, Any]]:
        """The operation the call invokes and its members; AccessDenied if none matches."""
        try:
            return self._operations.operation(service, call)
        except Unidentified:
            raise AccessDenied(
                f"User: {caller.arn} is not authorized to perform this request: Lamina's "
                f"gateway cannot tell which {service.client_name} operation it calls "
                f"({call.method} {call.raw_path}), so no policy can allow it"
            ) from None

    def check(
        self,
        signer: Signer,
        service: Service,
        operation: str,
        params: Mapping[str, Any],
        source_ip: str | None,
        body: bytes = b"",
    ) -> None:
        """Raises AccessDenied, with AWS's sentence, unless every permission is allowed."""
        caller = signer.caller
        account = self._authority.iam.account_id
        context = _context(caller, signer.region, source_ip)
        for needed in permissions(service, operation, params, signer.region, account, body):
            self._authority.check(caller, Question(needed.action, needed.resource, context))


def _context(caller: Caller, region: str, source_ip: str | None) -> dict[str, str | Sequence[str]]:
    now = int(time.time())
    context: dict[str, str | Sequence[str]] = {
        "aws:CurrentTime": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "aws:EpochTime": str(now),
        "aws:RequestedRegion": region,
        "aws:SecureTransport": "false",
    }
    if source_ip:
        context["aws:SourceIp"] = source_ip
    if caller.kind is CallerKind.USER:
        context["aws:username"] = caller.name
    return context
