"""Talking to a Lamina server as a client: credentials and a boto3 Lambda client."""

from __future__ import annotations

import os
from typing import Any

from lamina.settings import Settings

# What an unauthenticated server is signed with: it checks no signature, any key will do.
_PLACEHOLDER = ("lamina", "lamina")


def client_credentials(settings: Settings) -> tuple[str, str]:
    """The server's own key pair when it is configured here, else the standard AWS variables.

    Deliberately not botocore's whole provider chain: on a machine without credentials it
    ends in instance-metadata look-ups that stall for seconds before giving up.
    """
    if settings.access_key_id and settings.secret_access_key:
        return settings.access_key_id, settings.secret_access_key
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return key, secret
    return _PLACEHOLDER


def lambda_client(endpoint: str, settings: Settings) -> Any:
    import boto3  # Lazy: the rest of the CLI should not pay for boto3's import.
    from botocore.config import Config

    key, secret = client_credentials(settings)
    return boto3.client(
        "lambda",
        endpoint_url=endpoint,
        region_name=settings.region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=5,
            read_timeout=120,
            user_agent_appid="lamina-dev",
        ),
    )
