"""Installing the peer tools into bench/.peers/ (git-ignored), once, with their own clients.

A peer that cannot be installed (no network, a version gone from the registry, no npm) is
skipped with the reason; the rest of the suite still runs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from lamina.runtimes.registry import RuntimeRegistry

PEERS_DIR = Path(__file__).resolve().parents[1] / ".peers"
INSTALL_TIMEOUT_S = 600


class PeerUnavailable(Exception):
    """A peer could not be installed or started; the message is the reason shown."""


def interpreter(runtime: str) -> str:
    """The real executable Lamina runs `runtime` functions on, so every target runs the same."""
    found = RuntimeRegistry().interpreter(runtime)
    if found is None:
        raise PeerUnavailable(f"no interpreter for {runtime} on this machine")
    return found


def run_installer(command: list[str], cwd: Path) -> None:
    try:
        subprocess.run(
            command,
            cwd=cwd,
            check=True,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
        )
    except FileNotFoundError as error:
        raise PeerUnavailable(f"{command[0]} not found") from error
    except subprocess.TimeoutExpired as error:
        raise PeerUnavailable(f"`{' '.join(command)}` took over {INSTALL_TIMEOUT_S} s") from error
    except subprocess.CalledProcessError as error:
        lines = (error.stderr or error.stdout or "").strip().splitlines()
        # The client's own error lines, without its "see the debug log" pointers.
        errors = [
            line.strip()
            for line in lines
            if "err" in line.lower() and "log of this run" not in line and "debug" not in line
        ]
        reason = " / ".join(errors[:2]) or (lines[-1].strip() if lines else "no output")
        raise PeerUnavailable(f"`{' '.join(command[:3])} ...` failed: {reason}") from error


def npm_install(directory: Path, packages: list[str]) -> Path:
    """`npm install` the packages into `directory` unless that exact set is there already."""
    marker = directory / ".installed"
    wanted = " ".join(packages)
    if marker.exists() and marker.read_text() == wanted:
        return directory / "node_modules"
    npm = shutil.which("npm")
    if npm is None:
        raise PeerUnavailable("npm not found (Node.js is needed for serverless-offline)")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "package.json").write_text('{"name": "lamina-bench-peers", "private": true}\n')
    run_installer([npm, "install", "--no-audit", "--no-fund", *packages], directory)
    marker.write_text(wanted)
    return directory / "node_modules"


def pip_install(directory: Path, python: str, requirements: list[str]) -> Path:
    """A venv on `python` holding `requirements`, made once; its bin directory."""
    marker = directory / ".installed"
    wanted = " ".join(requirements)
    if marker.exists() and marker.read_text() == wanted:
        return directory / "bin"
    shutil.rmtree(directory, ignore_errors=True)
    run_installer([python, "-m", "venv", str(directory)], PEERS_DIR.parent)
    run_installer(
        [str(directory / "bin" / "pip"), "install", "--quiet", *requirements], PEERS_DIR.parent
    )
    marker.write_text(wanted)
    return directory / "bin"


def describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


if __name__ == "__main__":  # `python -m bench.suite.peers`: install both, say what happened
    from bench.suite.targets.base import Target
    from bench.suite.targets.lambda_local import LambdaLocalTarget
    from bench.suite.targets.serverless_offline import ServerlessOfflineTarget

    peers: list[Target] = [ServerlessOfflineTarget(), LambdaLocalTarget()]
    for target in peers:
        print(f"{target.name}: {target.prepare() or 'ready'}", file=sys.stderr)
