"""Node-to-node authentication: every internal call carries an HMAC, made with a secret the
cluster's nodes share through their store, over the time, the path, the call's description
and its body. A node that cannot show it is refused, so an invocation can only enter a
worker through the front door's own authentication and authorisation."""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "x-lamina-node-auth"
# How far apart two nodes' clocks and a call's transit may be before a signature is refused.
# Within it a captured call could be replayed: node-to-node traffic belongs on a private
# network (docs/cluster.md).
MAX_SKEW_S = 30.0


class NodeAuth:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, path: str, description: bytes, body: bytes, now: float | None = None) -> str:
        stamp = str(int(now if now is not None else time.time()))
        return f"{stamp}:{self._digest(stamp, path, description, body)}"

    def verify(
        self,
        header: str | None,
        path: str,
        description: bytes,
        body: bytes,
        now: float | None = None,
    ) -> bool:
        if not header:
            return False
        stamp, _, digest = header.partition(":")
        # isdigit() alone passes "²", which int() refuses; compare_digest refuses non-ASCII.
        if not (stamp.isascii() and stamp.isdigit() and digest.isascii()):
            return False
        now = time.time() if now is None else now
        if abs(now - int(stamp)) > MAX_SKEW_S:
            return False
        return hmac.compare_digest(digest, self._digest(stamp, path, description, body))

    def _digest(self, stamp: str, path: str, description: bytes, body: bytes) -> str:
        mac = hmac.new(self._secret, digestmod=hashlib.sha256)
        for part in (stamp.encode(), path.encode(), description):
            mac.update(len(part).to_bytes(4, "big"))
            mac.update(part)
        mac.update(body)
        return mac.hexdigest()
