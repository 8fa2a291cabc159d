"""The after-fork repairs a Python template holds: its children skip them and end up with the
threads and logging a child that ran them has; they put them back for forks of their own."""

from __future__ import annotations

import json

import pytest

from tests.support.runtime_probe import run_probe

# Run on the interpreter under test, in the runtime's directory, as a template imports it.
PROBE = """
import json, logging, os, sys, threading, time
import zygote

handler = logging.StreamHandler(sys.stderr)
logging.getLogger("probe").addHandler(handler)

def joined(target):
    thread = threading.Thread(target=target)
    thread.start()
    thread.join(10)
    return not thread.is_alive()

def free_to_others(lock):
    taken = []
    def take():
        if lock.acquire(timeout=5):
            lock.release()
            taken.append(True)
    return joined(take) and taken == [True]

def threads_log():
    # logging's module lock (getLogger) and a handler's (emit), from a new thread
    return joined(lambda: logging.getLogger("probe.%d" % os.getpid()).warning("a thread"))

def state():
    main = threading.main_thread()
    return {
        "main is current": main is threading.current_thread(),
        "main's ident": main.ident == threading.get_ident(),
        "main alive": main.is_alive(),
        "threads": threading.active_count(),
        "enumerated": [thread is main for thread in threading.enumerate()],
        "native id": main.native_id == threading.get_native_id(),
        "logging's lock free": free_to_others(logging._lock),
        "handler's lock free": free_to_others(handler.lock),
        "threads log": threads_log(),
    }

def child_state(first):
    # A child's state, after `first`; whether its repairs ran (threading's lock object is
    # the template's still, or a new one); whether the child's own fork runs them.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        first()
        found = state()
        found["repaired"] = threading._active_limbo_lock is not template_lock
        own = threading._active_limbo_lock
        grandchild = os.fork()
        if grandchild == 0:
            os._exit(0 if threading._active_limbo_lock is not own and threads_log() else 1)
        found["own fork repaired"] = os.waitpid(grandchild, 0)[1] == 0
        os.write(write, json.dumps(found).encode())
        os._exit(0)
    os.close(write)
    chunks = []
    while True:
        chunk = os.read(read, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks))

template_lock = threading._active_limbo_lock
report = {"plain": child_state(lambda: None)}

# Nothing is held while a second thread runs, nor on an interpreter not checked.
release = threading.Event()
other = threading.Thread(target=release.wait, daemon=True)
other.start()
zygote._hold_fork_repairs()
report["held with two threads"] = len(zygote._held_repairs)
release.set()
other.join()
while len(os.listdir("/proc/self/task")) > 1:  # its kernel thread ends a moment after
    time.sleep(0.01)
checked, zygote._CHECKED_REPAIRS = zygote._CHECKED_REPAIRS, ((3, 0), (3, 8))
zygote._hold_fork_repairs()
report["held on another interpreter"] = len(zygote._held_repairs)
zygote._CHECKED_REPAIRS = checked

zygote._hold_fork_repairs()
report["held"] = len(zygote._held_repairs)
# As the template's children do first (`_in_child`).
report["child"] = child_state(zygote._restore_fork_repairs)
report["template still holds"] = threading._after_fork.__code__ is zygote._no_repair.__code__
report["template"] = state()
print(json.dumps(report))
"""

RUNTIMES = ["python3.9", "python3.10", "python3.11", "python3.12", "python3.13"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_children_skip_the_repairs_to_the_same_state_and_restore_them(runtime: str) -> None:
    status, output, errors = run_probe(runtime, PROBE, timeout=120)
    assert status == 0, errors
    report = json.loads(output)
    assert (report["held with two threads"], report["held on another interpreter"]) == (0, 0)
    assert report["held"] == 2
    plain, child = report["plain"], report["child"]
    assert plain.pop("repaired") and not child.pop("repaired")
    # A fresh interpreter's main thread has its own native id; the repair sets it only from
    # CPython 3.13.4 on, so a plain fork's may be the parent's.
    assert child.pop("native id")
    plain.pop("native id")
    assert child == plain
    assert all(plain.values()), plain
    assert report["template still holds"]
    assert all(report["template"].values()), report["template"]
