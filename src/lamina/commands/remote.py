"""A running Lamina, as the CLI reaches it: boto3 clients and Lamina's own JSON endpoints.

Both are signed with the same credentials (the server's configured key pair, else the
standard AWS variables), so commands work against a server that requires signatures.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode

from lamina.dev.client import client_credentials
from lamina.settings import Settings


class RemoteError(RuntimeError):
    """The server could not be reached or refused; the message says which and why."""


class Remote:
    def __init__(self, endpoint: str, settings: Settings) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._settings = settings

    def client(self, service: str, read_timeout: float = 120) -> Any:
        import boto3  # Lazy: only commands that talk to a server pay for boto3.
        from botocore.config import Config

        key, secret = client_credentials(self._settings)
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self._settings.region,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=Config(
                retries={"max_attempts": 2, "mode": "standard"},
                connect_timeout=5,
                read_timeout=read_timeout,
            ),
        )

    def get_json(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """GET one of Lamina's `/_lamina/` endpoints, signed as the Lambda API is."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        url = f"{self.endpoint}{path}"
        if params:
            # %20, not +, for spaces: the signature is computed over the canonical query.
            url += "?" + urlencode(params, quote_via=quote)
        signed = AWSRequest(method="GET", url=url)
        credentials = Credentials(*client_credentials(self._settings))
        SigV4Auth(credentials, "lambda", self._settings.region).add_auth(signed)
        request = urllib.request.Request(url, headers=dict(signed.headers.items()))
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                document: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as error:
            with error:
                raise RemoteError(f"{self.endpoint} refused {path}: {_reason(error)}") from None
        except (urllib.error.URLError, OSError) as error:
            raise RemoteError(
                f"no Lamina server answers at {self.endpoint} ({error}); start one with "
                "`lamina serve` or pass --endpoint"
            ) from None
        return document


def _reason(error: urllib.error.HTTPError) -> str:
    """The AWS error code and message of a refusal, as the server's error shape carries them."""
    code = error.headers.get("x-amzn-ErrorType") or f"HTTP {error.code}"
    body = error.read()
    try:
        document = json.loads(body)
    except ValueError:
        return f"{code} {body.decode('utf-8', 'replace')[:300]}".strip()
    message = (
        document.get("message") or document.get("Message") if isinstance(document, dict) else None
    )
    return f"{code}: {message}" if message else code
