"""Enforced mode's signature checks of forwarded calls, made before their body is read.

An unauthenticated caller must not make the gateway hold a body. So the key and the date
of a signature are checked first, for every service; then for S3 the whole signature,
which covers the payload hash the caller declared (`x-amz-content-sha256`) rather than the
body itself: the body is checked against that hash as it streams to the upstream, and the
upstream request fails if it does not match. S3 signs the path as sent, unnormalised
(`a//b` is a key of its own), as botocore's `S3SigV4Auth` does; the other services' paths
are normalised, and `SigV4Verifier.authenticate` checks them with their body.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import AsyncIterator, Mapping

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest

from lamina.errors import IncompleteSignature, InvalidSignature, LaminaError
from lamina.identity.sigv4 import (
    WRONG_SIGNATURE,
    Signer,
    SigV4Verifier,
    parse_authorization,
    signed_at,
)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_PAYLOAD_HEADER = "x-amz-content-sha256"


class PayloadMismatch(LaminaError):
    """An S3 body whose SHA-256 is not the one its signature covers."""

    code = "XAmzContentSHA256Mismatch"
    status = 400
    error_type = None


PAYLOAD_MISMATCH = "The provided 'x-amz-content-sha256' header does not match what was computed."


def check_key(verifier: SigV4Verifier, headers: Mapping[str, str]) -> None:
    """The signature names a key Lamina knows (with its session token) and a date within
    15 minutes of now: raises otherwise."""
    match = _parsed(headers)
    # The verifier's own key resolution (root, users' keys, STS sessions), so that the
    # gateway and the fronts can never disagree on who may sign.
    verifier.credentials_for(match["key"], headers.get("x-amz-security-token"))
    signed_at(headers)


def authenticate_s3(
    verifier: SigV4Verifier,
    method: str,
    raw_path: str,
    query: str,
    headers: Mapping[str, str],
) -> Signer:
    """Who signed an S3 call, checked over its declared payload hash (its body unread)."""
    match = _parsed(headers)
    credentials, caller = verifier.credentials_for(
        match["key"], headers.get("x-amz-security-token")
    )
    stamp = signed_at(headers)
    signed = match["headers"].split(";")
    if _PAYLOAD_HEADER not in signed:
        raise IncompleteSignature(f"S3 requests must sign the {_PAYLOAD_HEADER} header")
    host = headers.get("host", "")
    request = AWSRequest(
        method=method,
        url=f"http://{host}{raw_path}" + (f"?{query}" if query else ""),
        headers={name: headers.get(name, "") for name in signed},
    )
    request.context["timestamp"] = stamp
    signer = S3SigV4Auth(credentials, match["service"], match["region"])
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, match["signature"]):
        raise InvalidSignature(WRONG_SIGNATURE)
    return Signer(caller, match["region"])


async def hash_checked(chunks: AsyncIterator[bytes], declared: str) -> AsyncIterator[bytes]:
    """`chunks`, checked against `declared`. The last chunk is held back until the whole
    body is hashed: on a mismatch the upstream never receives a complete body."""
    digest = hashlib.sha256()
    held = b""
    async for chunk in chunks:
        if not chunk:
            continue
        digest.update(chunk)
        if held:
            yield held
        held = chunk
    if not hmac.compare_digest(digest.hexdigest(), declared.lower()):
        raise PayloadMismatch(PAYLOAD_MISMATCH)
    if held:
        yield held


def _parsed(headers: Mapping[str, str]) -> re.Match[str]:
    return parse_authorization(headers.get("authorization", ""))
