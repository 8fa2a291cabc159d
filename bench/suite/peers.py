"""Installing the peer tools, at pinned versions, into bench/.peers/ (git-ignored), once.

The versions are committed under bench/peers/<peer>/: serverless-offline's as package.json
and package-lock.json, installed with `npm ci` so every transitive package is the locked
version (not whatever a range resolves to on the day); python-lambda-local's as `==` pins
of it and each of its dependencies, installed with `--no-deps` and then `pip check`ed, so an
incomplete set fails here rather than pulling in an unpinned release.

A peer the run includes (BENCH_PEERS, default all) that cannot be installed stops the run
with the reason (PeerNotInstalled): a bench that quietly loses its main comparison publishes
a page without it. A peer BENCH_PEERS leaves out is never installed.

BENCH_PEERS_DIR moves the installs elsewhere (default bench/.peers/).

`python -m bench.suite.peers` installs the peers BENCH_PEERS names, starts each one and
invokes a no-op function on it: the check that a fresh machine can measure them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.suite.config import PEER_NAMES
from lamina.runtimes.registry import RuntimeRegistry

BENCH_DIR = Path(__file__).resolve().parents[1]
PINS_DIR = BENCH_DIR / "peers"
PEERS_DIR = Path(os.environ.get("BENCH_PEERS_DIR") or BENCH_DIR / ".peers")
INSTALL_TIMEOUT_S = 600
NPM_LOCKED_FILES = ("package.json", "package-lock.json")


class PeerUnavailable(Exception):
    """A peer could not be installed or started; the message is the reason shown."""


class PeerNotInstalled(SystemExit):
    """A peer the run includes could not be installed: the run stops, saying why.

    A SystemExit, so `python -m bench.run` ends with status 1 and this message alone, and no
    `except Exception` that reports one target's failure and goes on can swallow it.
    """

    def __init__(self, peer: str, reason: str) -> None:
        others = ",".join(name for name in PEER_NAMES if name != peer)
        super().__init__(
            f"{peer} could not be installed: {reason}\n"
            f"The bench measures every peer BENCH_PEERS names (default: all). To run without "
            f"{peer}, leave it out: BENCH_PEERS={others} (the others) or BENCH_PEERS=none."
        )


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


def fingerprint(*parts: bytes) -> str:
    """What an install was made from: reinstalled when the pins (or interpreter) change."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def npm_ci(pins: Path, directory: Path) -> Path:
    """The lockfile in `pins` installed into `directory` by `npm ci`, once; its node_modules."""
    node_modules = directory / "node_modules"
    marker = directory / ".installed"
    wanted = fingerprint(*((pins / name).read_bytes() for name in NPM_LOCKED_FILES))
    if marker.exists() and marker.read_text() == wanted and node_modules.is_dir():
        return node_modules
    npm = shutil.which("npm")
    if npm is None:
        raise PeerUnavailable("npm not found (Node.js is needed for serverless-offline)")
    marker.unlink(missing_ok=True)
    directory.mkdir(parents=True, exist_ok=True)
    for name in NPM_LOCKED_FILES:
        shutil.copyfile(pins / name, directory / name)
    # Install scripts only print banners (serverless, aws-sdk, es5-ext); skipping them keeps
    # the install the same whichever npm runs it.
    run_installer([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], directory)
    marker.write_text(wanted)
    return node_modules


def pip_install(requirements: Path, directory: Path, python: str) -> Path:
    """A venv on `python` holding exactly the pinned `requirements`, made once; its bin."""
    bin_dir = directory / "bin"
    marker = directory / ".installed"
    wanted = fingerprint(requirements.read_bytes(), python.encode())
    if marker.exists() and marker.read_text() == wanted:
        return bin_dir
    shutil.rmtree(directory, ignore_errors=True)
    directory.parent.mkdir(parents=True, exist_ok=True)
    run_installer([python, "-m", "venv", str(directory)], directory.parent)
    pip = str(bin_dir / "pip")
    run_installer(
        [pip, "install", "--quiet", "--no-deps", "--requirement", str(requirements)],
        directory.parent,
    )
    # --no-deps installs only the pins; this says whether they are the whole set.
    run_installer([pip, "check"], directory.parent)
    marker.write_text(wanted)
    return bin_dir


def describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


def check(peer_names: frozenset[str], peers_dir: Path = PEERS_DIR) -> None:
    """Install, start and invoke each peer in `peer_names`; PeerNotInstalled if one cannot."""
    from bench.suite.handlers import FunctionSpec
    from bench.suite.targets.base import Target
    from bench.suite.targets.lambda_local import LambdaLocalTarget
    from bench.suite.targets.serverless_offline import ServerlessOfflineTarget

    peers: list[Target] = [ServerlessOfflineTarget(peers_dir), LambdaLocalTarget(peers_dir)]
    noop = FunctionSpec(name="noop-python", runtime="python", workload="noop")
    for target in peers:
        if target.name not in peer_names:
            print(f"{target.name}: left out by BENCH_PEERS", file=sys.stderr)
            continue
        target.prepare()
        try:
            with target.session([noop]) as session:
                milliseconds, answer = session.call(noop.name)
        except PeerUnavailable as error:
            raise SystemExit(f"{target.name} installed but did not start: {error}") from error
        print(
            f"{target.name}: {target.version()}: started; a no-op invoke answered "
            f"{answer.decode(errors='replace')} in {milliseconds:.1f} ms",
            file=sys.stderr,
        )


if __name__ == "__main__":
    # The package's copy of this module, not __main__: the targets raise its exceptions.
    from bench.suite import peers  # noqa: PLW0406
    from bench.suite.config import SuiteConfig

    peers.check(SuiteConfig.from_env().peers)
