"""Enforced mode's check of the console's own actions (those with no AWS operation: saved
test events, async-event redrive, the function list's figures).

The session's key pair is verified as a request's signature would be (so a deleted or
deactivated key stops working at once), and the caller it names is asked of the same
Authority the API asks. AWS operations need none of this: they go through the API itself
(`lamina.console.api_calls`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from lamina.arns import Account
from lamina.console.api_calls import CONSOLE_HOST, ApiError, KeyPair
from lamina.control.access import Authority, Question
from lamina.errors import LaminaError
from lamina.identity.caller import Caller
from lamina.identity.sigv4 import SigV4Verifier

# What each console action needs, as an IAM action on the function (see the README).
READ_FUNCTION = "lambda:GetFunction"
CHANGE_FUNCTION = "lambda:UpdateFunctionConfiguration"
INVOKE_FUNCTION = "lambda:InvokeFunction"
READ_METRICS = "cloudwatch:GetMetricData"


@dataclass(frozen=True)
class ConsoleAuthorizer:
    """Decides the console's own actions; allows everything in development mode."""

    account: Account
    verifier: SigV4Verifier | None = None  # enforced mode's: root, IAM users, STS sessions
    authority: Authority | None = None

    def check(
        self,
        keys: KeyPair | None,
        action: str,
        function: str | None = None,
        client_ip: str | None = None,
    ) -> None:
        """Raise ApiError (AccessDenied and AWS's sentence) unless the keys may do this."""
        if self.verifier is None or self.authority is None:
            return
        if keys is None:
            raise ApiError("AccessDeniedException", "Sign in first.", 403)
        try:
            caller = self._caller(keys)
            resource = self.account.function_arn(function) if function else "*"
            context: dict[str, str] = {
                "aws:CurrentTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "aws:EpochTime": str(int(time.time())),
                "aws:RequestedRegion": self.account.region,
                "aws:SecureTransport": "false",
            }
            if client_ip:
                context["aws:SourceIp"] = client_ip
            question = Question(
                action, resource, context, function=(function, None) if function else None
            )
            self.authority.check(caller, question)
        except LaminaError as error:
            raise ApiError(error.code, error.message, error.status) from error

    def _caller(self, keys: KeyPair) -> Caller:
        assert self.verifier is not None
        credentials = Credentials(keys.access_key_id, keys.secret_access_key, keys.session_token)
        request = AWSRequest(method="GET", url=f"http://{CONSOLE_HOST}/", data=b"")
        SigV4Auth(credentials, "lambda", self.account.region).add_auth(request)
        headers = {name.lower(): str(value) for name, value in request.headers.items()}
        headers["host"] = CONSOLE_HOST
        return self.verifier.verify("GET", CONSOLE_HOST, "/", "", headers, b"")
