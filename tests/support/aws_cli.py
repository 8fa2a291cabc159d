"""Running the AWS CLI (installed in the venv) against a test server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

AWS = str(Path(sys.executable).parent / "aws")


def cli_environment(scratch: Path, **extra: str) -> dict[str, str]:
    """Test credentials and region, and none of the user's configuration or pager."""
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(scratch / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(scratch / "none"),
        "AWS_PAGER": "",
        **extra,
    }


def run_aws(endpoint: str, scratch: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`aws --endpoint-url ENDPOINT --output json ARGS...`, never raising on failure."""
    return subprocess.run(
        [AWS, "--endpoint-url", endpoint, "--output", "json", *args],
        capture_output=True,
        text=True,
        env=cli_environment(scratch),
        timeout=60,
        check=False,
    )
