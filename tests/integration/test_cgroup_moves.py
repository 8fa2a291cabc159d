"""The kernel flag that makes a cold start's move into its cgroup cheap (`cgroup_moves`).

The flag is the host's: each test sets or clears it through a private mount of the cgroup v2
hierarchy, as Lamina does, and leaves it set (what every Lamina server on this host asks for).
Any other server starting meanwhile sets it again, so these tests run alone (`host_exclusive`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.sandbox import cgroup_moves, mounts
from tests.support.lamina_cli import run_lamina
from tests.support.server import LaminaServer

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="cgroup mounts need root"),
    pytest.mark.host_exclusive,
]


def mountinfo() -> str:
    return Path("/proc/self/mountinfo").read_text()


def host_mount() -> tuple[str, str] | None:
    """The host's cgroup v2 mount: its mount point and its per-mount options."""
    for line in mountinfo().splitlines():
        left, _, right = line.partition(" - ")
        if right.startswith("cgroup2 ") and "lamina-cgroup2-" not in left:
            fields = left.split()
            return fields[4], fields[5]
    return None


def mount_cgroup2(options: set[str]) -> None:
    directory = tempfile.mkdtemp(prefix="test-cgroup2-")
    try:
        mounts.mount("cgroup2", directory, "cgroup2", 0, ",".join(sorted(options)))
        mounts.umount(directory, mounts.MNT_DETACH)
    finally:
        os.rmdir(directory)


@pytest.fixture
def flag_cleared() -> Iterator[None]:
    """The flag off (the host's other cgroup2 options kept), and on again afterwards."""
    options = cgroup_moves.cgroup2_options(mountinfo())
    if options is None:
        pytest.skip("no cgroup v2 mount on this host")
    keep = options - {"rw", "ro", cgroup_moves.FLAG}
    try:
        mount_cgroup2(keep)
    except OSError as error:
        pytest.skip(f"cannot mount cgroup2 here: {error}")
    assert cgroup_moves.FLAG not in (cgroup_moves.cgroup2_options(mountinfo()) or set())
    try:
        yield
    finally:
        mount_cgroup2(keep | {cgroup_moves.FLAG})


def test_options_are_read_from_the_cgroup2_line() -> None:
    table = (
        "35 25 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
        "42 31 0:38 / /tmp/x rw - cgroup2 cgroup2 rw,nsdelegate,favordynmods\n"
    )
    assert cgroup_moves.cgroup2_options(table) == {"rw", "nsdelegate"}
    assert cgroup_moves.cgroup2_options(table, "/tmp/x") == {"rw", "nsdelegate", "favordynmods"}
    assert cgroup_moves.cgroup2_options(table, "/elsewhere") is None
    assert cgroup_moves.cgroup2_options(table.splitlines()[0]) is None


@pytest.mark.usefixtures("flag_cleared")
def test_the_flag_is_set_without_touching_the_hosts_mount() -> None:
    before = host_mount()
    before_options = cgroup_moves.cgroup2_options(mountinfo())
    fast, how = cgroup_moves.favour_moves(mountinfo())
    assert (fast, how) == (True, "cgroup2 favordynmods set by Lamina")
    after_options = cgroup_moves.cgroup2_options(mountinfo())
    assert after_options == (before_options or set()) | {cgroup_moves.FLAG}
    # Same mount point, same per-mount flags (nosuid, relatime…); no mount left behind.
    assert host_mount() == before
    assert not [name for name in os.listdir(tempfile.gettempdir()) if "lamina-cgroup2-" in name]
    assert cgroup_moves.favour_moves(mountinfo()) == (True, "cgroup2 favordynmods already set")


def doctor(**env: str) -> str:
    """`lamina doctor`'s line about the flag."""
    result = run_lamina("doctor", env={"LAMINA_NETWORK_ISOLATION": "off", **env}, timeout=60)
    assert result.returncode == 0, result.stderr
    return next(line for line in result.stdout.splitlines() if "RCU" in line)


def flag_set() -> bool:
    return cgroup_moves.FLAG in (cgroup_moves.cgroup2_options(mountinfo()) or set())


@pytest.mark.usefixtures("flag_cleared")
def test_doctor_reports_the_flag_and_changes_nothing() -> None:
    line = doctor()
    assert line.startswith("  [no ]"), line
    assert line.endswith("cgroup2 favordynmods not set; `lamina serve` sets it at start-up")
    assert not flag_set()


@pytest.mark.usefixtures("flag_cleared")
def test_the_server_sets_the_flag_unless_the_operator_says_not_to(tmp_path: Path) -> None:
    env = {"LAMINA_NETWORK_ISOLATION": "off", "LAMINA_ISOLATION": "namespace"}
    server = LaminaServer(tmp_path / "off", env={**env, "LAMINA_CGROUP_FAST_MOVES": "off"})
    server.start()
    try:
        assert not flag_set()
        line = doctor(LAMINA_CGROUP_FAST_MOVES="off")
        assert line.startswith("  [no ]") and "turned off by LAMINA_CGROUP_FAST_MOVES=off" in line
    finally:
        server.stop()
    server = LaminaServer(tmp_path / "on", env=env).start()
    try:
        assert flag_set()
        line = doctor()
        assert line.startswith("  [yes]") and line.endswith("cgroup2 favordynmods set"), line
    finally:
        server.stop()


def test_a_host_without_a_cgroup2_mount_is_left_alone() -> None:
    table = "35 25 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    assert cgroup_moves.favour_moves(table) == (False, "the host has no cgroup v2 mount")
    assert cgroup_moves.moves_state(table) == (False, "the host has no cgroup v2 mount")
