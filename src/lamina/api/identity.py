"""IAM's and STS's query fronts over one account's IAM store, by the service name their
requests are signed with."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from lamina.api.iam import build_iam_api
from lamina.api.sts import build_sts_api
from lamina.audit.trail import AuditTrail
from lamina.control.context import Domain
from lamina.control.iam import IamService
from lamina.control.sts import StsService
from lamina.identity.sigv4 import SigV4Verifier

Endpoint = Callable[[Request], Awaitable[Response]]


def identity_query_services(
    domain: Domain, verifier: SigV4Verifier | None, audit: AuditTrail | None
) -> dict[str, Endpoint]:
    iam = IamService(domain.stores.iam, domain.account)
    sts = StsService(iam, enforced=verifier is not None)
    return {
        "iam": build_iam_api(iam, sts, verifier, audit).handle,
        "sts": build_sts_api(sts, verifier, audit).handle,
    }
