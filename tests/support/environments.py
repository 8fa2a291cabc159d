"""Functions that report which environment ran them, and what became of its processes.

A function of HANDLERS (`app.describe`) returns its log stream (which names one environment)
and its process (pid, start time, PID namespace), so tests can check on the host that an
environment's processes are really gone.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from tests.support.archives import make_zip
from tests.support.waiting import wait_until

HANDLERS = """
import os, time

def identity():
    with open("/proc/self/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return {"pid": os.getpid(), "start": fields[19], "pidns": os.readlink("/proc/self/ns/pid")}

def describe(event, context):
    started = time.time()
    time.sleep(event.get("sleep", 0))
    return {
        "stream": context.log_stream_name,
        "init": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
        "stage": os.environ.get("STAGE"),
        "version": context.function_version,
        "process": identity(),
        "started": started,
        "ended": time.time(),
    }
"""


def handlers_zip(extra: str = "") -> bytes:
    return make_zip({"app.py": HANDLERS + extra})


def in_parallel(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run `calls` from threads released together; each result, or the exception it raised."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait()
        try:
            return call()
        except ClientError as error:
            return error

    with ThreadPoolExecutor(len(calls)) as executor:
        return list(executor.map(run, calls))


# ------------------------------------------------------------ processes on the host


def _running_since(stat_path: Path, start: str) -> bool:
    """Whether the process at `stat_path` started at `start` (clock ticks since boot) and
    has not exited: a pid, or a namespace's inode number, is reused once it is free."""
    try:
        fields = stat_path.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == start and fields[0] != "Z"


def alive(process: dict[str, Any]) -> bool:
    """Whether the process a function reported (see `identity`) still runs on this host."""
    if process["pidns"] == os.readlink("/proc/self/ns/pid"):
        return _running_since(Path(f"/proc/{process['pid']}/stat"), process["start"])
    # Process 1 of a PID namespace of its own: find it by namespace and start time, since
    # a new environment's namespace may get the inode number of one just destroyed.
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "pid") != process["pidns"]:
                    continue
            except OSError:
                continue
            if _running_since(entry / "stat", process["start"]):
                return True
    return False


def wait_until_gone(process: dict[str, Any], timeout_s: float = 15) -> None:
    wait_until(
        lambda: not alive(process),
        timeout=timeout_s,
        message=f"environment process {process} is still running",
    )
