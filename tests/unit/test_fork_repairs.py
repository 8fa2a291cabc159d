"""The after-fork repairs a Python template holds: skipped in its children, which put them
back for forks of their own, with threads and logging working in every generation."""

from __future__ import annotations

import pytest

from tests.support.runtime_probe import run_probe

# Run on the interpreter under test, in the runtime's directory, as a template imports it.
PROBE = """
import logging, os, sys, threading
import zygote

handler = logging.StreamHandler(sys.stderr)
logging.getLogger("probe").addHandler(handler)

def check(condition, what):
    if not condition:
        sys.stderr.write("%d: %s\\n" % (os.getpid(), what))
        os._exit(1)

def threads_log():
    # A new thread takes logging's module lock (getLogger) and a handler's (emit): a lock
    # left taken by the fork would stop it here.
    done = []
    def log():
        logging.getLogger("probe.%d" % os.getpid()).warning("from a thread")
        done.append(True)
    thread = threading.Thread(target=log)
    thread.start()
    thread.join(10)
    return done == [True] and not thread.is_alive()

def ended_well(pid):
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0

# While another thread runs, nothing is held: a fork must repair what that thread held.
release = threading.Event()
other = threading.Thread(target=release.wait, daemon=True)
other.start()
zygote._hold_fork_repairs()
check(zygote._held_repairs == [], "held with two threads")
release.set()
other.join()

zygote._hold_fork_repairs()
check(len(zygote._held_repairs) == 2, "held %r" % zygote._held_repairs)
template_lock = threading._active_limbo_lock

pid = os.fork()
if pid == 0:
    zygote._restore_fork_repairs()  # as the template's children do first (`_in_child`)
    # The repairs did not run: threading kept the template's own lock object...
    check(threading._active_limbo_lock is template_lock, "threading's repair ran")
    # ...and are back for the child's own forks, with logging's module lock free.
    check(zygote._held_repairs == [], "still held in the child")
    check(threading._after_fork.__code__ is not zygote._no_repair.__code__, "not restored")
    check(threads_log(), "a thread could not log in the child")
    check(threading.main_thread() is threading.current_thread(), "main thread")
    check(threading.active_count() == 1, "threads %d" % threading.active_count())
    child_lock = threading._active_limbo_lock
    grandchild = os.fork()  # function code's own fork
    if grandchild == 0:
        check(threading._active_limbo_lock is not child_lock, "the child's fork went unrepaired")
        check(threads_log(), "a thread could not log in the grandchild")
        os._exit(0)
    check(ended_well(grandchild), "the grandchild failed")
    os._exit(0)
check(ended_well(pid), "the child failed")
# The template still holds them, and logs from threads as before.
check(threading._after_fork.__code__ is zygote._no_repair.__code__, "released in the template")
check(threads_log(), "a thread could not log in the template")
print("ok")
"""


@pytest.mark.parametrize("runtime", ["python3.9", "python3.12", "python3.13"])
def test_children_skip_the_repairs_and_restore_them_for_their_own_forks(runtime: str) -> None:
    status, output, errors = run_probe(runtime, PROBE, timeout=120)
    assert (status, output) == (0, "ok"), errors
