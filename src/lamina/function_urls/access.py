"""Who may call a function URL: its resource policy (AuthType NONE) or SigV4 (AWS_IAM).

NONE: AWS performs no authentication, but the function's (or alias's) resource policy must
grant public access: `lambda:InvokeFunctionUrl` to Principal `*` (added with
`--function-url-auth-type NONE`) and, for URLs created since October 2025, also
`lambda:InvokeFunction` (added with `--invoked-via-function-url`). Every Lamina URL is new in
that sense, so both are required.

AWS_IAM: the request must carry a SigV4 signature for service `lambda`. In enforced mode the
signer (the root key, an IAM user's key or an STS session) must be allowed
`lambda:InvokeFunctionUrl` and `lambda:InvokeFunction` on the function by its identity
policies or the function's resource policy, as for any API call. Without configured
credentials Lamina's API accepts anyone, and AWS_IAM URLs accept any well-formed
signature for `lambda` without checking it: unsigned requests are still refused, as on AWS,
so a client that forgets to sign finds out locally.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lamina.control.policies import Caller, allows
from lamina.errors import LaminaError
from lamina.identity.sigv4 import SigV4Verifier

URL_ACTION = "lambda:InvokeFunctionUrl"
INVOKE_ACTION = "lambda:InvokeFunction"
SIGNING_SERVICE = "lambda"

_CREDENTIAL = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)/\d{8}/[^/]+/([^/]+)/aws4_request,"
)


class Forbidden(Exception):
    """The request may not invoke the URL; the message says why (for the server log only)."""


def public_refusal(statements: Iterable[Mapping[str, Any]]) -> str | None:
    """Why a policy does not open a NONE URL to anyone, or None when it does."""
    statements = list(statements)
    anyone = Caller()
    missing = [
        action
        for action in (URL_ACTION, INVOKE_ACTION)
        if not allows(
            statements, action, anyone, url_auth_type="NONE", invoked_via_function_url=True
        )
    ]
    if not missing:
        return None
    return f'the resource policy does not allow {" and ".join(missing)} for Principal "*"'


@dataclass(frozen=True)
class IamCaller:
    """The identity a SigV4-signed request was made with."""

    access_key: str
    account_id: str
    # The signer's ARN (the account's root in development mode).
    user_arn: str = ""

    def authorizer(self) -> dict[str, Any]:
        """`requestContext.authorizer` as AWS fills it for an IAM-authorised URL request."""
        return {
            "iam": {
                "accessKey": self.access_key,
                "accountId": self.account_id,
                "callerId": self.account_id,
                "cognitoIdentity": None,
                "principalOrgId": None,
                "userArn": self.user_arn or f"arn:aws:iam::{self.account_id}:root",
                # Lamina keeps no user ids on callers yet: the account, as for root.
                "userId": self.account_id,
            }
        }


class IamAuthenticator:
    """Checks SigV4 signatures on AWS_IAM URL requests."""

    def __init__(self, verifier: SigV4Verifier | None, account_id: str) -> None:
        self._verifier = verifier
        self._account_id = account_id

    def authenticate(
        self,
        method: str,
        host: str,
        raw_path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        function: tuple[str, str] = ("", ""),
        source_ip: str | None = None,
    ) -> IamCaller:
        """The signer's identity; raises Forbidden when the signature is missing or wrong,
        or (enforced mode) when the signer may not invoke `function` (name, qualifier)
        through its URL."""
        authorization = headers.get("authorization", "")
        match = _CREDENTIAL.match(authorization.strip())
        if match is None:
            raise Forbidden("the URL's AuthType is AWS_IAM and the request is not SigV4-signed")
        access_key, service = match.groups()
        if service != SIGNING_SERVICE:
            raise Forbidden(
                f"the request is signed for service {service!r}; function URLs need 'lambda'"
            )
        if self._verifier is None:
            return IamCaller(access_key, self._account_id)
        try:
            signer = self._verifier.authenticate(method, host, raw_path, query, headers, body)
            authorizer = self._verifier.authorizer
            if authorizer is not None:
                name, qualifier = function
                # An unqualified URL's resource is the function's unqualified ARN.
                target = {"FunctionName": name, "AuthType": "AWS_IAM"}
                if qualifier != "$LATEST":
                    target["Qualifier"] = qualifier
                # Every Lamina URL is new: AWS wants both actions of such URLs' callers.
                for operation in ("InvokeFunctionUrl", "Invoke"):
                    authorizer.authorize("lambda", operation, target, signer, source_ip)
        except LaminaError as error:
            raise Forbidden(error.message) from None
        caller = signer.caller
        return IamCaller(access_key, caller.account, caller.arn)
