"""SigV4 verification of incoming requests, reusing botocore's signer."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from lamina.errors import IncompleteSignature, InvalidSignature, UnrecognizedClient

_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request,\s*SignedHeaders=(?P<headers>[^,]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)
_MAX_CLOCK_SKEW = timedelta(minutes=15)
_UNSIGNED = {"UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"}


class SigV4Verifier:
    """Checks that a request was signed with the one configured key pair."""

    def __init__(self, access_key_id: str, secret_access_key: str) -> None:
        self._access_key_id = access_key_id
        self._credentials = Credentials(access_key_id, secret_access_key)

    def verify(
        self,
        method: str,
        host: str,
        raw_path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        authorization = headers.get("authorization")
        if not authorization:
            raise IncompleteSignature(
                "Request is missing Authentication Token: sign it with AWS Signature Version 4"
            )
        match = _AUTHORIZATION.match(authorization.strip())
        if match is None:
            raise IncompleteSignature(
                f"Authorization header is not a valid SigV4 header: {authorization[:80]}"
            )
        if match["key"] != self._access_key_id:
            raise UnrecognizedClient("The security token included in the request is invalid.")
        stamp = headers.get("x-amz-date", "")
        try:
            signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise IncompleteSignature("Request is missing a valid X-Amz-Date header") from None
        if abs(datetime.now(UTC) - signed_at) > _MAX_CLOCK_SKEW:
            raise InvalidSignature(
                f"Signature expired: {stamp} is more than 15 minutes away from the server's time"
            )
        body_hash = hashlib.sha256(body).hexdigest()
        declared_hash = headers.get("x-amz-content-sha256")
        if declared_hash and declared_hash not in _UNSIGNED and declared_hash != body_hash:
            raise InvalidSignature("The provided x-amz-content-sha256 does not match the body")
        signed = match["headers"].split(";")
        request = AWSRequest(
            method=method,
            url=f"http://{host}{raw_path}" + (f"?{query}" if query else ""),
            headers={name: headers.get(name, "") for name in signed},
            data=body,
        )
        request.context["timestamp"] = stamp
        signer = SigV4Auth(self._credentials, match["service"], match["region"])
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected, match["signature"]):
            raise InvalidSignature(
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method."
            )
