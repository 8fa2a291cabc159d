"""SigV4 verification of incoming requests, reusing botocore's signer.

Who may sign: the account's root key pair (configured), and, once `with_iam` gave the
verifier the account's IAM store (enforced mode), an IAM user's Active access key or an
unexpired STS session's key with its session token. The result is the `Caller` the request
acts as. AWS's refusals: an unknown (or inactive) key is UnrecognizedClientException, a wrong
secret InvalidSignatureException, an expired session ExpiredTokenException (the query
protocol renames them, see `lamina.api.pipeline.query_error_code`). Secrets and tokens are
compared in constant time and never appear in an error.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from lamina.constants import DEFAULT_ACCOUNT_ID
from lamina.errors import ExpiredToken, IncompleteSignature, InvalidSignature, UnrecognizedClient
from lamina.identity.caller import Caller, CallerKind
from lamina.model.iam import ACTIVE, Session
from lamina.store.protocols.iam import IamStore

_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request,\s*SignedHeaders=(?P<headers>[^,]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)
_MAX_CLOCK_SKEW = timedelta(minutes=15)
_UNSIGNED = {"UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"}
_SESSION_CACHE_MAX = 4096
_USER_ARN = re.compile(r"^arn:aws:iam::\d{12}:user/(?:.*/)?(?P<name>[^/]+)$")

INVALID_TOKEN = "The security token included in the request is invalid."
EXPIRED_TOKEN = "The security token included in the request is expired"
WRONG_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


@dataclass(frozen=True, slots=True)
class Signer:
    """A verified request's signer: who, and the region its credential scope names."""

    caller: Caller
    region: str


class Authorizer(Protocol):
    """Decides whether a verified request may run (enforced mode): raises AccessDenied (or
    the operation's own refusal) when not."""

    def authorize(
        self,
        service: str,
        operation: str,
        params: Mapping[str, Any],
        signer: Signer,
        source_ip: str | None,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class _Known:
    """A key the verifier found: its credentials and who signs with it."""

    credentials: Credentials
    caller: Caller
    stamp: int  # the IAM store's change stamp when found (users' keys only)


class SigV4Verifier:
    """Checks a request's signature against the keys the account knows."""

    def __init__(
        self,
        access_key_id: str,
        secret_access_key: str,
        account_id: str = DEFAULT_ACCOUNT_ID,
        keys: IamStore | None = None,
        clock: Callable[[], float] = time.time,
        authorizer: Authorizer | None = None,
    ) -> None:
        if keys is not None and authorizer is None:
            raise ValueError("IAM keys may sign only where every call is authorised")
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._account_id = account_id
        root = Caller(
            f"arn:aws:iam::{account_id}:root",
            account_id,
            CallerKind.ROOT,
            access_key_id=access_key_id,
        )
        self._root = _Known(Credentials(access_key_id, secret_access_key), root, 0)
        self._keys = keys
        self._clock = clock
        # Enforced mode's policy check, run by the API pipeline once the input is decoded.
        self.authorizer = authorizer
        # Users' keys by id, valid while the store's stamp has not moved; sessions by key id
        # (a session never changes once issued, only expires).
        self._user_keys: dict[str, _Known] = {}
        self._sessions: dict[str, tuple[Session, _Known]] = {}
        self._lock = threading.Lock()

    @property
    def enforcing(self) -> bool:
        """Whether IAM users and sessions may sign (enforced mode), not only the root key."""
        return self._keys is not None

    def with_iam(self, keys: IamStore, account_id: str, authorizer: Authorizer) -> SigV4Verifier:
        """Enforced mode: the same root key, plus the IAM users' and STS sessions' keys of
        `keys`, and every call decided by `authorizer`. Only complete together: a user's key
        that authenticates must never go unauthorised."""
        return SigV4Verifier(
            self._access_key_id,
            self._secret_access_key,
            account_id,
            keys,
            self._clock,
            authorizer,
        )

    def verify(
        self,
        method: str,
        host: str,
        raw_path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
    ) -> Caller:
        return self.authenticate(method, host, raw_path, query, headers, body).caller

    def authenticate(
        self,
        method: str,
        host: str,
        raw_path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
    ) -> Signer:
        authorization = headers.get("authorization")
        if not authorization:
            raise IncompleteSignature(
                "Request is missing Authentication Token: sign it with AWS Signature Version 4"
            )
        match = parse_authorization(authorization)
        known = self._known(match["key"], headers.get("x-amz-security-token"))
        stamp = signed_at(headers)
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
        signer = SigV4Auth(known.credentials, match["service"], match["region"])
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected, match["signature"]):
            raise InvalidSignature(WRONG_SIGNATURE)
        return Signer(known.caller, match["region"])

    # ------------------------------------------------------------------ key resolution

    def credentials_for(self, key_id: str, token: str | None) -> tuple[Credentials, Caller]:
        """The credentials an access key id (with its session token) signs with, and who signs
        with them; UnrecognizedClient, ExpiredToken as for a request signed with them. For
        fronts that check a signature their own way (the service gateway's S3 calls)."""
        known = self._known(key_id, token)
        return known.credentials, known.caller

    def _known(self, key_id: str, token: str | None) -> _Known:
        if hmac.compare_digest(key_id.encode(), self._access_key_id.encode()):
            return self._root
        if self._keys is None:
            raise UnrecognizedClient(INVALID_TOKEN)
        if key_id.startswith("ASIA"):
            return self._session_key(key_id, token)
        return self._user_key(key_id)

    def _user_key(self, key_id: str) -> _Known:
        assert self._keys is not None
        stamp = self._keys.change_stamp()
        known = self._user_keys.get(key_id)
        if known is not None and known.stamp == stamp:
            return known
        key = self._keys.get_access_key(key_id)
        user = self._keys.get_user(key.user_name) if key is not None else None
        if key is None or user is None or key.status != ACTIVE:
            # Unknown keys are not remembered: a stream of made-up ids must not grow memory.
            with self._lock:
                self._user_keys.pop(key_id, None)
            raise UnrecognizedClient(INVALID_TOKEN)
        caller = Caller(
            user.arn, self._account_id, CallerKind.USER, user.name, access_key_id=key_id
        )
        known = _Known(Credentials(key_id, key.secret), caller, stamp)
        with self._lock:
            self._user_keys[key_id] = known
        return known

    def _session_key(self, key_id: str, token: str | None) -> _Known:
        assert self._keys is not None
        cached = self._sessions.get(key_id)
        if cached is None:
            session = self._keys.get_session(key_id)
            if session is None or not session.enforced:
                # A development-mode session was issued to whoever asked: not honoured here.
                raise UnrecognizedClient(INVALID_TOKEN)
            cached = (
                session,
                _Known(
                    Credentials(key_id, session.secret, session.token), _session_caller(session), 0
                ),
            )
            with self._lock:
                if len(self._sessions) >= _SESSION_CACHE_MAX:
                    self._forget_expired()
                self._sessions[key_id] = cached
        session, known = cached
        if token is None or not hmac.compare_digest(token.encode(), session.token.encode()):
            raise UnrecognizedClient(INVALID_TOKEN)
        if session.expires <= self._clock():
            raise ExpiredToken(EXPIRED_TOKEN)
        return known

    def _forget_expired(self) -> None:
        now = self._clock()
        for key_id in [key for key, (s, _) in self._sessions.items() if s.expires <= now]:
            del self._sessions[key_id]
        while len(self._sessions) >= _SESSION_CACHE_MAX:
            del self._sessions[next(iter(self._sessions))]


def _session_caller(session: Session) -> Caller:
    """Who acts with a session's credentials: the role assumed, or whoever called
    GetSessionToken (a user, or the root)."""
    key_id = session.access_key_id
    if session.role_arn is not None:
        return Caller(
            session.principal_arn,
            session.account,
            CallerKind.ASSUMED_ROLE,
            session.role_arn.rsplit("/", 1)[-1],
            access_key_id=key_id,
            session_policy=session.session_policy,
            role_arn=session.role_arn,
        )
    user = _USER_ARN.match(session.principal_arn)
    if user is not None:
        return Caller(session.principal_arn, session.account, CallerKind.USER, user["name"], key_id)
    return Caller(session.principal_arn, session.account, CallerKind.ROOT, access_key_id=key_id)


def parse_authorization(authorization: str) -> re.Match[str]:
    """The parts of a SigV4 Authorization header (key, date, region, service, signed headers,
    signature); IncompleteSignature when it is not one."""
    match = _AUTHORIZATION.match(authorization.strip())
    if match is None:
        raise IncompleteSignature(
            f"Authorization header is not a valid SigV4 header: {authorization[:80]}"
        )
    return match


def signed_at(headers: Mapping[str, str]) -> str:
    """The request's X-Amz-Date, checked to be within AWS's 15 minutes of clock skew."""
    stamp = headers.get("x-amz-date", "")
    try:
        moment = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise IncompleteSignature("Request is missing a valid X-Amz-Date header") from None
    if abs(datetime.now(UTC) - moment) > _MAX_CLOCK_SKEW:
        raise InvalidSignature(
            f"Signature expired: {stamp} is more than 15 minutes away from the server's time"
        )
    return stamp
