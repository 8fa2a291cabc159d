"""The environment's root filesystem, built in real namespaces (needs root, like the backend).

The integration tests (test_isolation.py) check what functions see over HTTP; these check the
corner cases of building the root: interpreters installed in hidden places, data inside them.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.sandbox import mounts
from lamina.sandbox.namespace import (
    RUNTIMES_DIR,
    UID_BASE,
    UID_BLOCK,
    PidNamespaceSpawner,
    UidPool,
    _lock_dir,
    enter_sandbox,
    probe,
)

SCRIPT = """
echo "pid=$$ uid=$(id -u)"
for path in "$@"; do
    if [ -d "$path" ]; then echo "$path: dir [$(ls -A "$path" | tr '\\n' ' ')]"
    elif [ -f "$path" ]; then echo "$path: file $(head -c 32 "$path" | tr -cd '[:alnum:]')"
    else echo "$path: absent"; fi
done
touch "$1/new" 2>/dev/null && echo "wrote $1" || echo "cannot write $1"
"""


@pytest.fixture(autouse=True)
def namespaces() -> None:
    why = probe()
    if why is not None:
        if os.environ.get("LAMINA_ISOLATION") == "process":
            pytest.skip(f"LAMINA_ISOLATION=process: {why}")
        pytest.fail(f"the namespace backend is unavailable here: {why}")


@pytest.fixture
def scratch() -> Iterator[Path]:
    # Outside /tmp as well as inside it: the two are handled differently.
    with tempfile.TemporaryDirectory(dir="/var/tmp") as directory:
        yield Path(directory)


def run(plan: mounts.RootPlan, *paths: str) -> list[str]:
    read_fd, write_fd = os.pipe()
    spawner = PidNamespaceSpawner()
    try:
        process = spawner.spawn(
            ["/bin/sh", "-c", SCRIPT, "sh", *paths],
            {"PATH": "/usr/bin:/bin"},
            write_fd,
            enter_sandbox(plan, UID_BASE - 2, [], 64),
        )
    finally:
        spawner.close()
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as output:
        lines = output.read().decode().splitlines()
    assert process.wait(30) == 0, lines
    return lines


def make_plan(scratch: Path, **fields: tuple[str, ...]) -> mounts.RootPlan:
    (scratch / "stage").mkdir()
    (scratch / "task").mkdir()
    (scratch / "task" / "app.py").write_text("code")
    return mounts.RootPlan(
        staging=str(scratch / "stage"),
        task_root=str(scratch / "task"),
        opt_dir=None,
        runtime_dir=str(RUNTIMES_DIR),
        tmp_bytes=1 << 20,
        system=mounts.system_layout(),
        **fields,
    )


def install(root: Path) -> Path:
    """A fake interpreter installation with a data directory inside it."""
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python").write_text("interpreter")
    (root / "data" / "secrets").mkdir(parents=True)
    (root / "data" / "secrets" / "key").write_text("secret")
    return root


@pytest.mark.parametrize("under_tmp", [False, True])
def test_exposed_installations_are_read_only_and_hidden_data_stays_hidden(
    scratch: Path, tmp_path: Path, under_tmp: bool
) -> None:
    prefix = install((tmp_path if under_tmp else scratch) / "interpreter")
    assert str(prefix).startswith("/tmp/") == under_tmp
    plan = make_plan(scratch, expose=(str(prefix),), hide=(str(prefix / "data"),))
    lines = run(plan, str(prefix), f"{prefix}/bin/python", f"{prefix}/data", str(scratch))
    assert lines == [
        f"pid=1 uid={UID_BASE - 2}",
        f"{prefix}: dir [bin data ]",
        f"{prefix}/bin/python: file interpreter",
        f"{prefix}/data: dir []",
        # The scratch directory holding the staging root and the code is not there at all,
        # unless it is an ancestor of the exposed installation.
        f"{scratch}: " + ("absent" if under_tmp else "dir [interpreter ]"),
        f"cannot write {prefix}",
    ]


def test_code_is_at_var_task_and_only_tmp_is_writable(scratch: Path) -> None:
    plan = make_plan(scratch)
    lines = run(plan, "/tmp", "/var/task/app.py", "/var/tmp", "/opt", "/usr/bin/env")
    assert lines[1:-2] == [
        "/tmp: dir []",
        "/var/task/app.py: file code",
        "/var/tmp: dir []",  # the same private /tmp
        "/opt: dir []",
    ]
    assert lines[-2].startswith("/usr/bin/env: file ")
    assert lines[-1] == "wrote /tmp"


def first_free_block(lock_dir: Path) -> int:
    """The block of uids the next server (or pool) on this host claims."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    for block in range(256):
        with open(lock_dir / f"uids-{block}.lock", "a", encoding="ascii") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue
            return block
    raise AssertionError("every block is held")


# The distribution's interpreter: the environment's uid may not read the test's own.
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "python3"
# A leftover whose first thread has ended while another runs on: /proc shows it a zombie.
FIRST_THREAD_ENDS = """
import ctypes, threading, time
threading.Thread(target=time.sleep, args=(600,)).start()
time.sleep(0.2)
ctypes.CDLL(None).syscall(60, 0)  # exit(2): this thread only
"""


# The host's blocks change hands whenever a server or backend starts: between finding the
# free block and claiming it, another would take it (and kill the leftover).
@pytest.mark.host_exclusive
@pytest.mark.parametrize(
    "argv",
    [["sleep", "600"], [SYSTEM_PYTHON, "-c", FIRST_THREAD_ENDS]],
    ids=["running", "first-thread-ended"],
)
def test_claiming_a_block_ends_what_a_dead_server_left_running_as_its_uids(
    argv: list[str],
) -> None:
    # As a crashed server's runtime that cleared its parent-death signal would be.
    lock_dir = _lock_dir()
    block = first_free_block(lock_dir)
    uid = UID_BASE + block * UID_BLOCK + 7
    leftover = subprocess.Popen(argv, user=uid, group=uid)
    time.sleep(0.5)  # the second one's first thread has ended by now
    pool = UidPool(lock_dir, ends_leftovers=True)
    try:
        assert pool.block == block
        assert leftover.wait(timeout=5) == -signal.SIGKILL
    finally:
        leftover.kill()
        leftover.wait()
        pool.close()


# Its bystander runs as a uid of the host's first block, which a server starting meanwhile
# would claim, ending the bystander, and whose free uids other tests check nothing runs as.
@pytest.mark.host_exclusive
def test_a_pool_with_a_lock_directory_of_its_own_kills_nothing(tmp_path: Path) -> None:
    # Its locks prove nothing about the host's servers, whose environments may run as these.
    uid = UID_BASE + 7
    bystander = subprocess.Popen(["sleep", "600"], user=uid, group=uid)
    pool = UidPool(tmp_path / "locks")
    try:
        assert pool.block == 0
        time.sleep(0.1)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
        pool.close()
