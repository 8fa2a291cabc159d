"""Python run on a function's interpreter, in the directory of Lamina's Python runtime, so that
a probe imports the runtime's modules (`bootstrap`, `immortal`) as a runtime does."""

from __future__ import annotations

import subprocess

import pytest

from lamina.runtimes.registry import RuntimeRegistry
from lamina.sandbox.runtime_files import PYTHON_BOOTSTRAP


def run_probe(runtime: str, source: str, timeout: float = 60) -> tuple[int, str, str]:
    """(exit status, stdout stripped, stderr) of `source`; skips where the host lacks `runtime`."""
    interpreter = RuntimeRegistry().interpreter(runtime)
    if interpreter is None:
        pytest.skip(f"no {runtime} on this host")
    done = subprocess.run(
        [interpreter, "-c", source],
        check=False,
        cwd=PYTHON_BOOTSTRAP.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stdout.strip(), done.stderr
