"""The platform's side of a SnapStart snapshot: its control protocol stays whole when a
caller gives up on a fork, and its children are held by pidfds."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import lamina.runtimes.python as python_runtime
from lamina.sandbox.snapshots import (
    AdmissionFailed,
    ChildEnded,
    ChildProcess,
    Snapshot,
    SnapshotIsolation,
    _is_child_of,
    _readable,
)

HEADER = struct.Struct(">I")


def read_request(peer: socket.socket) -> dict[str, object]:
    """One request as the snapshot reads it (its descriptors are closed unread)."""
    data, ancdata, _, _ = peer.recvmsg(HEADER.size, socket.CMSG_SPACE(64))
    for _, _, payload in ancdata:
        for index in range(0, len(payload) - len(payload) % 4, 4):
            os.close(int.from_bytes(payload[index : index + 4], sys.byteorder))
    (size,) = HEADER.unpack(data)
    body = b""
    while len(body) < size:
        body += peer.recv(size - len(body))
    return dict(json.loads(body))


def reply(peer: socket.socket, *messages: dict[str, object]) -> None:
    bodies = [json.dumps(message).encode() for message in messages]
    peer.sendall(b"".join(HEADER.pack(len(body)) + body for body in bodies))


def test_a_fork_given_up_on_leaves_the_protocol_whole() -> None:
    """A caller cancelled while its fork's reply is on its way: that reply is taken as its
    own, and the next fork gets the next reply (not an error, not a shifted pid)."""
    process = subprocess.Popen(["sleep", "30"])
    ours, theirs = socket.socketpair()

    async def scenario() -> int:
        snapshot = Snapshot(process, ours, None)
        read_fd, write_fd = os.pipe()
        gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            first = asyncio.ensure_future(snapshot.fork({"n": 1}, [write_fd], gone))
            await asyncio.sleep(0.05)
            assert await asyncio.to_thread(read_request, theirs) == {"n": 1}
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            second = asyncio.ensure_future(snapshot.fork({"n": 2}, [write_fd]))
            assert await asyncio.to_thread(read_request, theirs) == {"n": 2}
            # Both replies in one read: the one given up on first.
            reply(theirs, {"pid": 101}, {"pid": 102})
            pid, _ = await asyncio.wait_for(second, 5)
            assert snapshot.alive
            assert not gone.done()  # its orphan still runs
            reply(theirs, {"exit": 101, "status": -9})
            await asyncio.wait_for(gone, 5)  # what it held can be given back now
            # The orphan's exit was claimed: a later child given its pid is not taken for
            # ended.
            third = asyncio.ensure_future(snapshot.fork({"n": 3}, [write_fd]))
            assert await asyncio.to_thread(read_request, theirs) == {"n": 3}
            reply(theirs, {"pid": 101})
            _, exited = await asyncio.wait_for(third, 5)
            await asyncio.sleep(0.05)
            assert not exited.done()
            return pid
        finally:
            os.close(read_fd)
            os.close(write_fd)
            snapshot.close()

    try:
        assert asyncio.run(scenario()) == 102
    finally:
        theirs.close()
        process.kill()
        process.wait()


def test_a_child_is_acted_on_through_its_pidfd_only_while_it_lives() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert _is_child_of(child.pid, os.getpid(), child.pid)
        assert not _is_child_of(child.pid, os.getppid(), child.pid)  # not the parent named
        assert not _is_child_of(child.pid, os.getpid(), child.pid + 1)  # not the pid named
        held = ChildProcess(child.pid, os.pidfd_open(child.pid))
        assert held.alive
        netns = held.namespace("net")
        assert os.readlink(f"/proc/self/fd/{netns}") == os.readlink("/proc/self/ns/net")
        os.close(netns)
        held.kill()
        assert child.wait(5) == -signal.SIGKILL
        assert not held.alive
        # Its pid may now be anyone's: its namespaces are refused, signals go nowhere.
        with pytest.raises(RuntimeError, match="ended"):
            held.namespace("net")
        held.kill()
        held.close()
        assert not held.alive
    finally:
        child.kill()
        child.wait()


def test_only_forks_exits_are_kept_and_a_closed_snapshot_ends_its_forks() -> None:
    """The snapshot is process 1 of its PID namespace and also reaps what handlers leave
    behind: such an exit is not kept for a later fork that gets the same pid. And once the
    snapshot is gone, a fork's exit is known at once (its children went with it)."""
    process = subprocess.Popen(["sleep", "30"])
    ours, theirs = socket.socketpair()

    async def scenario() -> tuple[bool, int]:
        snapshot = Snapshot(process, ours, None)
        read_fd, write_fd = os.pipe()
        try:
            reply(theirs, {"exit": 201, "status": 0})  # a grandchild, reaped by process 1
            await asyncio.sleep(0.05)
            forked = asyncio.ensure_future(snapshot.fork({"n": 1}, [write_fd]))
            assert await asyncio.to_thread(read_request, theirs) == {"n": 1}
            reply(theirs, {"pid": 201})
            _, exited = await asyncio.wait_for(forked, 5)
            await asyncio.sleep(0.05)
            kept_early = exited.done()
            snapshot.close()
            return kept_early, await asyncio.wait_for(exited, 5)
        finally:
            os.close(read_fd)
            os.close(write_fd)
            snapshot.close()

    try:
        kept_early, status = asyncio.run(scenario())
        assert not kept_early
        assert status == -signal.SIGKILL
    finally:
        theirs.close()
        process.kill()
        process.wait()


@pytest.mark.parametrize(
    ("said", "raised"),
    [(b"", ChildEnded), (b"x", AdmissionFailed)],
    ids=["closed unasked: the function's", "a word of failure: the platform's"],
)
def test_an_admission_that_ends_says_whose_failure_it_was(
    said: bytes, raised: type[Exception]
) -> None:
    """The child closes its admission pipe without a word only when the function's code
    ended it (an at-fork hook, say); when the platform's own step failed in the child it
    writes a word first, and the failure is the platform's (an internal error), never
    blamed on the function."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.write(write_fd, said)
    os.close(write_fd)
    try:
        with pytest.raises(raised) as caught:
            asyncio.run(_readable(read_fd, 5.0))
        assert caught.type is raised
    finally:
        os.close(read_fd)


def test_a_child_whose_own_admission_fails_says_so_before_it_ends() -> None:
    """In the child (`runtimes/python/snapshot.py`): a failing platform step writes its word
    on the admission pipe, then ends the child as before."""
    runtime = Path(python_runtime.__file__).parent
    code = (
        "import os, sys\n"
        f"sys.path.insert(0, {str(runtime)!r})\n"
        "import snapshot\n"
        "def broken():\n"
        "    raise OSError('no namespace for you')\n"
        "snapshot._disconnect_inherited = broken\n"
        "ready = int(sys.argv[1])\n"
        "snapshot._admit(None, [-1, -1, -1, ready])\n"
    )
    read_fd, write_fd = os.pipe()
    result = subprocess.run(
        [sys.executable, "-c", code, str(write_fd)],
        pass_fds=[write_fd],
        capture_output=True,
        timeout=30,
        check=False,
    )
    os.close(write_fd)
    try:
        assert result.returncode != 0
        assert b"no namespace for you" in result.stderr
        assert os.read(read_fd, 8) == b"x"
    finally:
        os.close(read_fd)


def stopped_snapshot(released: list[int | None]) -> tuple[socket.socket, Snapshot]:
    """A snapshot process (a real one) whose isolation notes the process's exit status at
    the moment it is released, and the snapshot's end of its control socket."""
    process = subprocess.Popen(["sleep", "30"])
    ours, theirs = socket.socketpair()
    isolation = SnapshotIsolation(
        uids=[os.getuid()], cgroup=None, release=lambda: released.append(process.returncode)
    )
    return theirs, Snapshot(process, ours, isolation)


def test_a_snapshot_stopped_while_serving_is_released_by_the_loop_once_dead() -> None:
    """Stopped without waiting, the snapshot is killed at once but released only when the
    event loop sees it dead (and reaped): a snapshot slow to die cannot block the loop."""
    released: list[int | None] = []

    async def scenario() -> tuple[list[int | None], bool]:
        theirs, snapshot = stopped_snapshot(released)
        snapshot.close(wait=False)
        at_close = list(released)  # the loop has not run since
        for _ in range(500):
            if snapshot.finished:
                break
            await asyncio.sleep(0.01)
        theirs.close()
        return at_close, snapshot.finished

    at_close, finished = asyncio.run(scenario())
    assert at_close == []
    assert finished
    assert released == [-signal.SIGKILL]


def test_closing_again_waits_for_a_snapshot_still_dying() -> None:
    """The server stopping closes again what it stopped without waiting: the snapshot is
    released then, once, and the loop's watch on it ends."""
    released: list[int | None] = []

    async def scenario() -> tuple[bool, int]:
        theirs, snapshot = stopped_snapshot(released)
        snapshot.close(wait=False)
        watching = len(os.listdir("/proc/self/fd"))
        snapshot.close()
        theirs.close()
        # The watch's pidfd is closed: one descriptor fewer besides the socket closed here.
        return snapshot.finished, watching - len(os.listdir("/proc/self/fd"))

    finished, closed = asyncio.run(scenario())
    assert finished
    assert closed == 2
    assert released == [-signal.SIGKILL]
