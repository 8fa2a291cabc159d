"""Control groups: finding the hierarchy, writing limits, reading usage, killing, cleaning up.

Most tests run against a directory tree laid out like a cgroup filesystem; the last ones use
the host's real cgroups, which this project's machines and CI provide (root).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lamina.sandbox import cgroups
from lamina.sandbox.cgroups import (
    CgroupManager,
    EnvironmentCgroup,
    Hierarchy,
    Limits,
    cpu_quota_us,
    locate,
    open_manager,
    reap_stale,
)

V1_MOUNTINFO = """\
35 25 0:30 / /sys/fs/cgroup/memory rw,relatime shared:7 - cgroup cgroup rw,memory
36 25 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:8 - cgroup cgroup rw,cpu,cpuacct
37 25 0:32 /docker/abc /sys/fs/cgroup/pids rw,relatime shared:9 - cgroup cgroup rw,pids
38 25 0:33 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
"""
V1_SELF = """\
9:pids:/docker/abc/inner
4:memory:/process_api/xyz
2:cpu,cpuacct:/
0::/
"""
V2_MOUNTINFO = "30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V2_SELF = "0::/user.slice/lamina.scope\n"


def test_cpu_quota_is_one_vcpu_per_1769_mb() -> None:
    assert cpu_quota_us(1769) == 20_000
    assert cpu_quota_us(128) == 1447
    assert cpu_quota_us(10240) == 115_771
    assert cpu_quota_us(1) == 1000  # the kernel's minimum


def test_locate_v1_maps_each_controller_to_this_process_group() -> None:
    hierarchy, why = locate(V1_MOUNTINFO, V1_SELF)
    assert hierarchy == Hierarchy(
        1,
        {
            "memory": Path("/sys/fs/cgroup/memory/process_api/xyz"),
            "cpu": Path("/sys/fs/cgroup/cpu,cpuacct"),
            # The mount's own root (/docker/abc) is not repeated below its mount point.
            "pids": Path("/sys/fs/cgroup/pids/inner"),
        },
    )
    assert why == "cgroup v1"


def test_locate_v2_uses_the_unified_hierarchy() -> None:
    hierarchy, why = locate(V2_MOUNTINFO, V2_SELF)
    assert hierarchy is not None and hierarchy.version == 2
    assert set(hierarchy.bases.values()) == {Path("/sys/fs/cgroup/user.slice/lamina.scope")}
    assert why == "cgroup v2"
    assert locate("", "0::/\n") == (None, "no cgroup filesystem is mounted")


# How Lamina opens a control file: the cgroup filesystem makes the files, never a write.
KERNEL_WRITE_FLAGS = cgroups._WRITE_FLAGS


@pytest.fixture(autouse=True)
def files_made_on_write(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a directory tree laid out like a cgroup filesystem, no kernel makes a group's
    control files: a write makes its own. Not for the tests on real cgroups."""
    if "manager" not in request.fixturenames:
        monkeypatch.setattr(cgroups, "_WRITE_FLAGS", cgroups._WRITE_FLAGS | os.O_CREAT | os.O_TRUNC)


def fake_v1(tmp_path: Path) -> Hierarchy:
    bases = {name: tmp_path / name / "server" for name in ("memory", "cpu", "pids")}
    for base in bases.values():
        base.mkdir(parents=True)
    return Hierarchy(1, bases)


def test_v1_group_gets_memory_and_pids_limits_then_cpu_after_init(tmp_path: Path) -> None:
    manager = CgroupManager(fake_v1(tmp_path), "lamina-test")
    assert manager.active == ["memory", "cpu", "pids"]
    group = manager.create("env1", Limits(128 << 20, 128))
    memory = tmp_path / "memory/server/lamina-test/env1"
    assert (memory / "memory.limit_in_bytes").read_text() == str(128 << 20)
    assert (memory / "memory.memsw.limit_in_bytes").read_text() == str(128 << 20)
    assert (tmp_path / "pids/server/lamina-test/env1/pids.max").read_text() == "1024"
    cpu = tmp_path / "cpu/server/lamina-test/env1"
    assert not (cpu / "cpu.cfs_quota_us").exists()  # init runs uncapped
    group.cap_cpu(128)
    assert (cpu / "cpu.cfs_quota_us").read_text() == "1447"
    assert (cpu / "cpu.cfs_period_us").read_text() == "20000"
    assert (cpu / "cpu.shares").read_text() == "74"
    # All environments together weigh a quarter of a process beside the server.
    assert (tmp_path / "cpu/server/lamina-test/cpu.shares").read_text() == "256"
    assert group.procs_files == [
        str(tmp_path / f"{name}/server/lamina-test/env1/cgroup.procs")
        for name in ("memory", "cpu", "pids")
    ]


def test_v1_without_swap_accounting_sets_swappiness_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel without swap accounting has no memory.memsw.* files: the group's swapping is
    turned off through memory.swappiness instead, and no file is made."""
    monkeypatch.setattr(cgroups, "_WRITE_FLAGS", KERNEL_WRITE_FLAGS)
    memory, pids = tmp_path / "memory", tmp_path / "pids"
    for directory, files in (
        (memory, ("memory.limit_in_bytes", "memory.swappiness")),
        (pids, ("pids.max",)),
    ):
        directory.mkdir()
        for name in files:
            (directory / name).touch()
    EnvironmentCgroup(1, {"memory": memory, "pids": pids}).apply(Limits(128 << 20, 128))
    assert (memory / "memory.limit_in_bytes").read_text() == str(128 << 20)
    assert (memory / "memory.swappiness").read_text() == "0"
    assert not (memory / "memory.memsw.limit_in_bytes").exists()
    assert (pids / "pids.max").read_text() == "1024"


def test_v1_usage_and_oom_kills_are_read_from_the_group(tmp_path: Path) -> None:
    manager = CgroupManager(fake_v1(tmp_path), "lamina-test")
    group = manager.create("env1", Limits(128 << 20, 128))
    memory = tmp_path / "memory/server/lamina-test/env1"
    (memory / "memory.max_usage_in_bytes").write_text("52428800\n")
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert group.peak_bytes() == 50 << 20
    assert group.oom_kills() == 2
    (memory / "memory.max_usage_in_bytes").write_text("1000\n")
    assert group.peak_bytes() == 50 << 20  # the peak never goes down


def test_v2_group_uses_unified_files(tmp_path: Path) -> None:
    base = tmp_path / "scope"
    base.mkdir()
    (base / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    manager = CgroupManager(
        Hierarchy(2, dict.fromkeys(("memory", "cpu", "pids"), base)), "lamina-1"
    )
    assert manager.active == ["memory", "cpu", "pids"]
    assert (base / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    assert (base / "lamina-1" / "cpu.weight").read_text() == "25"  # the default's quarter
    group = manager.create("env", Limits(256 << 20, 256))
    leaf = base / "lamina-1" / "env"
    assert (leaf / "memory.max").read_text() == str(256 << 20)
    assert (leaf / "memory.swap.max").read_text() == "0"
    assert (leaf / "memory.oom.group").read_text() == "1"
    assert (leaf / "pids.max").read_text() == "1024"
    group.cap_cpu(256)
    assert (leaf / "cpu.max").read_text() == "2894 20000"
    assert group.procs_files == [str(leaf / "cgroup.procs")]
    (leaf / "memory.peak").write_text("4096\n")
    (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert (group.peak_bytes(), group.oom_kills()) == (4096, 1)


def test_v2_without_delegated_controllers_says_why(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("\n")
    manager = CgroupManager(Hierarchy(2, dict.fromkeys(("memory", "cpu", "pids"), tmp_path)), "x")
    assert manager.active == []
    assert "not delegated" in manager.unavailable["memory"]


def test_groups_of_dead_servers_are_reaped(tmp_path: Path) -> None:
    (tmp_path / "lamina-999999999" / "env").mkdir(parents=True)
    (tmp_path / f"lamina-{os.getpid()}" / "env").mkdir(parents=True)
    (tmp_path / "unrelated" / "env").mkdir(parents=True)
    reap_stale(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        f"lamina-{os.getpid()}",
        "unrelated",
    ]


# ----------------------------------------------------------------------- real cgroups


@pytest.fixture
def manager() -> CgroupManager:
    found, why = open_manager(f"lamina-{os.getpid()}-unit")
    if found is None:
        if os.environ.get("LAMINA_ISOLATION") == "process":
            pytest.skip(f"LAMINA_ISOLATION=process and no usable cgroups: {why}")
        pytest.fail(f"cgroups are unavailable on this host ({why}); set LAMINA_ISOLATION=process")
    return found


def run_in(procs_files: list[str], code: str) -> subprocess.CompletedProcess[bytes]:
    def join() -> None:
        for name in procs_files:
            with open(name, "w") as procs:
                procs.write(str(os.getpid()))

    return subprocess.run(
        [sys.executable, "-S", "-c", code],
        preexec_fn=join,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_real_group_kills_a_memory_hog_and_reports_it(manager: CgroupManager) -> None:
    group = manager.create("hog", Limits(64 << 20, 64))
    try:
        result = run_in(group.procs_files, "b = []\nwhile True: b.append(b'x' * (8 << 20))")
        assert result.returncode == -9
        assert group.oom_kills() >= 1
        assert (group.peak_bytes() or 0) >= 56 << 20
    finally:
        group.kill()
        assert group.remove()
        manager.close()


def test_real_group_file_the_kernel_lacks_is_not_found(manager: CgroupManager) -> None:
    """What `apply` skips a missing control file by (memory.memsw.* on a kernel without swap
    accounting): the cgroup filesystem refuses to create it, so only opening it without
    O_CREAT tells it is missing."""
    group = manager.create("lacking", Limits(64 << 20, 64))
    try:
        directory = Path(group.procs_files[0]).parent
        with pytest.raises(FileNotFoundError):
            cgroups._write(directory / "memory.no_such_control", 1)
    finally:
        removed = group.remove()
        manager.close()
    assert removed


def test_real_group_limits_processes(manager: CgroupManager) -> None:
    group = manager.create("forks", Limits(256 << 20, 256, pids=16))
    code = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    while True:\n"
        "        if os.fork() == 0:\n"
        "            os.closerange(0, 3)\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "except OSError as error:\n"
        "    print(n, error.errno)\n"
    )
    try:
        result = run_in(group.procs_files, code)
        assert result.stdout.split() == [b"15", b"11"]  # 15 children, then EAGAIN
        assert len(group.pids()) == 15
        group.kill()
        for _ in range(200):
            if group.remove():
                break
            subprocess.run(["sleep", "0.01"], check=True)
        assert not group.pids()
    finally:
        group.kill()
        group.remove()
        manager.close()


def test_real_environments_weigh_a_quarter_of_a_process_beside_the_server(
    manager: CgroupManager,
) -> None:
    """The kernel takes the weight: under load, the event loop that sends each event runs
    before the runtimes it wakes (see ENVIRONMENTS_WEIGHT_DIVISOR)."""
    if "cpu" not in manager.active:
        manager.close()
        pytest.skip(f"the cpu controller is not usable here: {manager.unavailable['cpu']}")
    group = manager.create("weighed", Limits(128 << 20, 128))
    try:
        parents = {Path(name).parent.parent for name in group.procs_files}
        weights = {
            (parent / name).read_text().strip()
            for parent in parents
            for name in ("cpu.shares", "cpu.weight")
            if (parent / name).exists()
        }
        assert weights in ({"256"}, {"25"})
    finally:
        group.kill()
        assert group.remove()
        manager.close()


def _busy_group(
    manager: CgroupManager, name: str
) -> tuple[EnvironmentCgroup, subprocess.Popen[bytes]]:
    """A group whose process holds 256 MiB and four children: after SIGKILL, the group
    stays busy while they exit and their memory is freed."""
    group = manager.create(name, Limits(512 << 20, 512))
    code = (
        "import os, sys, time\n"
        "for procs in sys.argv[1:]:\n"
        "    with open(procs, 'w') as file:\n"
        "        file.write(str(os.getpid()))\n"
        "held = bytearray(256 << 20)\n"
        "for _ in range(4):\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(60)\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-S", "-c", code, *group.procs_files], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"up\n"
    return group, process


@pytest.mark.parametrize("waiting", ["on the loop", "in this thread"])
def test_a_killed_group_is_removed_once_its_processes_have_exited(
    manager: CgroupManager, waiting: str
) -> None:
    group, process = _busy_group(manager, f"emptying-{waiting.rsplit(maxsplit=1)[-1]}")
    directories = [Path(procs).parent for procs in group.procs_files]
    try:
        if waiting == "on the loop":
            assert asyncio.run(group.remove_once_empty())
        else:
            assert group.remove_once_empty_now()
        assert not [directory for directory in directories if directory.exists()]
        assert process.wait(5) == -9
    finally:
        process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()
        group.kill()
        group.remove()
        manager.close()
