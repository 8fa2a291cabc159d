"""Real peer servers for integration tests (an S3/SQS/SNS-compatible server)."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import boto3

from tests.support.ports import free_port
from tests.support.waiting import wait_until


class MotoServer:
    """moto's standalone server: S3, SQS, SNS, Kinesis, DynamoDB (Streams) and friends over
    real HTTP, no Docker."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log_path = log_dir / f"moto-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> MotoServer:
        # moto_server, with atomic SQS receives (see `moto_serve`).
        moto = Path(__file__).with_name("moto_serve.py")
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=self._log,
        )
        wait_until(
            self._answers,
            timeout=timeout,
            message=lambda: f"moto server did not start: {self.log_path.read_text()}",
            ignoring=(OSError,),
        )
        return self

    def _answers(self) -> bool:
        with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):
            return True

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
        if self._log is not None:
            self._log.close()

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    @property
    def env(self) -> dict[str, str]:
        """What a Lamina server needs to reach this peer through the standard settings."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ENDPOINT_URL_SQS": self.endpoint,
            "AWS_ENDPOINT_URL_SNS": self.endpoint,
            "AWS_ENDPOINT_URL_EVENTS": self.endpoint,
            "AWS_ENDPOINT_URL_KINESIS": self.endpoint,
            "AWS_ENDPOINT_URL_DYNAMODB": self.endpoint,
            "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": self.endpoint,
            # botocore's name for Secrets Manager (its service id is "Secrets Manager").
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": self.endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
        }
