"""With credentials configured, the Logs API and `lamina logs` need valid SigV4 signatures."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support.server import LaminaServer

KEY, SECRET = "AKIALAMINALOGS", "lamina-logs-secret"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    env = {"LAMINA_ACCESS_KEY_ID": KEY, "LAMINA_SECRET_ACCESS_KEY": SECRET}
    server = LaminaServer(tmp_path_factory.mktemp("logs-auth") / "data", env=env).start()
    yield server
    server.stop()


def test_signed_logs_calls_succeed_and_others_are_refused(secured: LaminaServer) -> None:
    logs = secured.client("logs", access_key=KEY, secret_key=SECRET)
    logs.create_log_group(logGroupName="/aws/lambda/secured")
    logs.create_log_stream(logGroupName="/aws/lambda/secured", logStreamName="s")
    logs.put_log_events(
        logGroupName="/aws/lambda/secured",
        logStreamName="s",
        logEvents=[{"timestamp": int(time.time() * 1000), "message": "signed line"}],
    )
    forged = secured.client("logs", access_key=KEY, secret_key="not-the-secret")
    with pytest.raises(ClientError) as caught:
        forged.describe_log_groups()
    # JSON-protocol services answer signature errors with 400, not the 403 of rest-json.
    assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    logs.close()
    forged.close()


def test_lamina_logs_signs_with_the_configured_credentials(
    secured: LaminaServer, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "lamina", "logs", "secured", "--endpoint", secured.endpoint]
    env = {**os.environ, "AWS_CONFIG_FILE": str(tmp_path / "none")}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=60, check=False
        )

    refused = run()
    assert refused.returncode == 1
    assert refused.stderr.startswith("lamina: ") and "Traceback" not in refused.stderr
    env.update(LAMINA_ACCESS_KEY_ID=KEY, LAMINA_SECRET_ACCESS_KEY=SECRET)
    shown = run()
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.rstrip().endswith(" signed line")
