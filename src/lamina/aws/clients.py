"""boto3 clients shared by the parts of Lamina that call other AWS services, one per service
and region, at the endpoints the operator configured.

boto3 sessions are not thread-safe while clients are: a client is made under a lock and
then used from any thread. Services without a configured endpoint are left to botocore,
which reads `AWS_ENDPOINT_URL_<SERVICE>` and `AWS_ENDPOINT_URL` itself (or goes to AWS).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any


class ClientCache:
    """boto3 clients by (service, region), made on first use; blocking calls only."""

    def __init__(
        self,
        region: str,
        endpoints: Mapping[str, str | None] | None = None,
        *,
        read_timeout: float = 30.0,
        max_attempts: int = 3,
        max_pool_connections: int = 50,
    ) -> None:
        self._region = region
        self._endpoints = dict(endpoints or {})
        self._read_timeout = read_timeout
        self._max_attempts = max_attempts
        self._pool = max_pool_connections
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}

    @property
    def region(self) -> str:
        return self._region

    def client(self, service: str, region: str | None = None) -> Any:
        key = (service, region or self._region)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                import boto3  # Lazy: only deployments that call out pay for it.
                from botocore.config import Config

                client = boto3.session.Session().client(
                    service,
                    region_name=key[1],
                    endpoint_url=self._endpoints.get(service),
                    config=Config(
                        connect_timeout=3,
                        # Above SQS's 20 s long poll, so a long poll is never cut short.
                        read_timeout=self._read_timeout,
                        retries={"max_attempts": self._max_attempts, "mode": "standard"},
                        max_pool_connections=self._pool,
                    ),
                )
                self._clients[key] = client
        return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


def arn_region(arn: str) -> str:
    return arn.split(":", 5)[3]


def arn_account(arn: str) -> str:
    return arn.split(":", 5)[4]


def arn_resource(arn: str) -> str:
    return arn.split(":", 5)[5]
