"""Running `lamina` subcommands as a user would: a child process against a test server."""

from __future__ import annotations

import os
import subprocess
import sys


def run_lamina(
    *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """`python -m lamina ARGS` with no LAMINA_* settings but those given."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("LAMINA_")}
    return subprocess.run(
        [sys.executable, "-m", "lamina", *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=timeout,
        check=False,
    )
