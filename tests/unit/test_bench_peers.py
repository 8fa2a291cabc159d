"""The bench keeps its peers: one it cannot install fails the run, unless BENCH_PEERS leaves
it out. The installers are made to fail without the network: a stand-in `npm` on PATH that
answers as npm does when the registry lacks a locked version, and pip with no index."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench.run import all_targets
from bench.suite.config import SuiteConfig
from bench.suite.peers import PINS_DIR, PeerNotInstalled, check
from bench.suite.targets.lambda_local import LambdaLocalTarget
from bench.suite.targets.serverless_offline import ServerlessOfflineTarget

ROOT = Path(__file__).resolve().parents[2]
REGISTRY_LACKS_IT = "npm error notarget No matching version found for @hapi/ammo@6.0.2."
FAILING_NPM = f"""#!/bin/sh
echo "$PWD $*" >> "$(dirname "$0")/calls"
echo "npm error code ETARGET" >&2
echo "{REGISTRY_LACKS_IT}" >&2
echo "npm error A complete log of this run can be found in: /tmp/npm-debug.log" >&2
exit 1
"""


@pytest.fixture
def failing_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH whose `npm` fails; returns the file it records its calls in."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(FAILING_NPM)
    npm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir / "calls"


@pytest.fixture
def offline_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pip with no index, no config files and an empty wheel directory: nothing to install."""
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))


def test_the_pins_are_committed_exact_versions() -> None:
    locked = PINS_DIR / "serverless-offline"
    assert (locked / "package-lock.json").is_file()
    manifest = (locked / "package.json").read_text()
    assert '"serverless": "3.' in manifest
    assert '"serverless-offline": "13.' in manifest
    requirements = (PINS_DIR / "python-lambda-local" / "requirements.txt").read_text()
    pins = [line for line in requirements.splitlines() if line and not line.startswith("#")]
    assert pins
    assert all("==" in line for line in pins)


@pytest.mark.slow
def test_a_peer_that_cannot_install_fails_the_bench_run(tmp_path: Path, failing_npm: Path) -> None:
    env = {
        **os.environ,
        "BENCH_QUICK": "1",
        "BENCH_PEERS": "serverless-offline",
        "BENCH_PEERS_DIR": str(tmp_path / "peers"),
        "BENCH_RUNTIMES": "python",
        "BENCH_PUBLISH": "0",
        "BENCH_RESULTS_DIR": str(tmp_path / "results"),
    }
    finished = subprocess.run(
        [sys.executable, "-m", "bench.run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert finished.returncode == 1, finished.stderr[-3000:]
    assert "serverless-offline could not be installed" in finished.stderr
    assert REGISTRY_LACKS_IT in finished.stderr
    assert "BENCH_PEERS=python-lambda-local" in finished.stderr
    assert "Traceback" not in finished.stderr
    assert "round 1" not in finished.stderr
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
    # It ran `npm ci` on the committed lockfile, copied beside the install.
    (call,) = failing_npm.read_text().splitlines()
    directory, arguments = call.split(" ", 1)
    assert directory == str(tmp_path / "peers" / "serverless-offline")
    assert arguments.startswith("ci ")
    lockfile = Path(directory) / "package-lock.json"
    assert (
        lockfile.read_bytes()
        == (PINS_DIR / "serverless-offline" / "package-lock.json").read_bytes()
    )


def test_serverless_offline_that_cannot_install_stops_with_the_reason(
    tmp_path: Path, failing_npm: Path
) -> None:
    target = ServerlessOfflineTarget(tmp_path)

    with pytest.raises(PeerNotInstalled) as stopped:
        target.prepare()

    assert stopped.value.code != 0
    message = str(stopped.value.code)
    assert message.startswith("serverless-offline could not be installed: `")
    assert REGISTRY_LACKS_IT in message
    assert "complete log" not in message
    assert not (tmp_path / "serverless-offline" / ".installed").exists()


@pytest.mark.slow
def test_python_lambda_local_that_cannot_install_stops_with_the_reason(
    tmp_path: Path, offline_pip: None
) -> None:
    target = LambdaLocalTarget(tmp_path)

    with pytest.raises(PeerNotInstalled) as stopped:
        target.prepare()

    message = str(stopped.value.code)
    assert message.startswith("python-lambda-local could not be installed: `")
    assert "python-lambda-local==0.1.13" in message
    assert "BENCH_PEERS=serverless-offline" in message
    assert not (tmp_path / "python-lambda-local" / ".installed").exists()


def test_a_peer_left_out_by_bench_peers_is_never_installed(
    tmp_path: Path, failing_npm: Path, offline_pip: None, capsys: pytest.CaptureFixture[str]
) -> None:
    only_lambda_local = SuiteConfig.from_env({"BENCH_PEERS": "python-lambda-local"})
    names = [target.name for target in all_targets(only_lambda_local)]
    assert "serverless-offline" not in names
    assert "python-lambda-local" in names

    no_peers = SuiteConfig.from_env({"BENCH_PEERS": "none"})
    names = [target.name for target in all_targets(no_peers)]
    assert not {"serverless-offline", "python-lambda-local"} & set(names)

    check(no_peers.peers, tmp_path)

    assert not failing_npm.exists()
    assert not any(tmp_path.glob("python-lambda-local*"))
    assert capsys.readouterr().err.count("left out by BENCH_PEERS") == 2


def test_bench_peers_names_only_known_peers() -> None:
    with pytest.raises(ValueError, match="unknown peers"):
        SuiteConfig.from_env({"BENCH_PEERS": "serverless-offline,localstack"})
    assert SuiteConfig.from_env({}).peers == {"serverless-offline", "python-lambda-local"}
