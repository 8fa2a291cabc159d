"""Console sessions: a random id in an HttpOnly, SameSite=Strict cookie, the state kept
server-side with an expiry, and a CSRF token every state-changing request must carry.

In enforced mode a session holds the key pair its person signed in with (checked the way a
signature is, at sign-in and again by every call the console makes with it). In development
mode every visitor gets an anonymous session, so CSRF protection holds there too: another
site's page must not be able to post to a console on localhost.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lamina.console.api_calls import KeyPair

COOKIE = "lamina_console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL_S = 8 * 3600.0
# Anonymous sessions are cheap to make: cap them so a flood of visitors cannot grow memory.
_MAX_SESSIONS = 10_000
# Development mode's calls need a signature to carry, though nothing checks it.
DEVELOPMENT_KEYS = KeyPair("LAMINACONSOLE", "development-mode-is-not-checked")


@dataclass
class Session:
    """One browser's session."""

    session_id: str
    csrf_token: str
    expires_at: float
    keys: KeyPair | None = None  # None: not signed in
    principal: str = ""  # the signed-in caller's ARN
    flash: list[str] = field(default_factory=list)

    @property
    def signed_in(self) -> bool:
        return self.keys is not None

    def csrf_matches(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token, token or "")


class SessionStore:
    """Sessions of this process, by id (a console session is one server's: see the README)."""

    def __init__(self, ttl_s: float = SESSION_TTL_S, clock: Callable[[], float] = time.time):
        self._ttl_s = ttl_s
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if session.expires_at <= self._clock():
                del self._sessions[session_id]
                return None
            return session

    def create(self, keys: KeyPair | None = None, principal: str = "") -> Session:
        now = self._clock()
        session = Session(
            session_id=secrets.token_urlsafe(32),
            csrf_token=secrets.token_urlsafe(32),
            expires_at=now + self._ttl_s,
            keys=keys,
            principal=principal,
        )
        with self._lock:
            if len(self._sessions) >= _MAX_SESSIONS:
                self._forget_expired(now)
            if len(self._sessions) >= _MAX_SESSIONS:
                # Still full: the oldest go (dicts keep insertion order).
                for stale in list(self._sessions)[: _MAX_SESSIONS // 10]:
                    del self._sessions[stale]
            self._sessions[session.session_id] = session
        return session

    def delete(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def _forget_expired(self, now: float) -> None:
        for session_id in [k for k, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[session_id]
