"""Short-lived signed URLs from which clients download code archives (`Code.Location`)."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

_LIFETIME_SECONDS = 600


class CodeLinks:
    """Signs and checks `/_lamina/code/<blob>` links, like S3 presigned URLs on AWS."""

    def __init__(self, secret: bytes, endpoint: str) -> None:
        self._secret = secret
        self._endpoint = endpoint

    def _signature(self, key: str, expires: int) -> str:
        return hmac.new(self._secret, f"{key}:{expires}".encode(), hashlib.sha256).hexdigest()

    def url_for(self, key: str) -> str:
        expires = int(time.time()) + _LIFETIME_SECONDS
        query = urlencode({"expires": expires, "signature": self._signature(key, expires)})
        return f"{self._endpoint}/_lamina/code/{key}?{query}"

    def is_valid(self, key: str, expires: str, signature: str) -> bool:
        # isdigit() alone passes "²", which int() refuses; compare_digest refuses non-ASCII.
        if not (expires.isascii() and expires.isdigit() and signature.isascii()):
            return False
        if int(expires) < time.time():
            return False
        return hmac.compare_digest(self._signature(key, int(expires)), signature)
