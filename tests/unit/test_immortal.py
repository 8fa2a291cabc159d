"""The template's objects made immortal: which ones, and that nothing else changes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lamina.runtimes.python import immortal
from lamina.runtimes.registry import RuntimeRegistry
from lamina.sandbox.runtime_files import PYTHON_BOOTSTRAP

# Run on the interpreter under test, with the runtime's directory on its path: objects of
# each kind, made immortal or left as they were, then used, dropped and collected.
PROBE = """
import gc, json, socket, sys, weakref
import immortal

IMMORTAL = 0xFFFFFFFF
ended = []

class Resource:
    def __del__(self):
        ended.append("resource")

def function():
    return 1

table = {"key": ["a", "list", ("of", "things")], "number": 10**30}
resource = Resource()
ours, theirs = socket.socketpair()
immortal_before = sys.getrefcount(json)
made = immortal.make_immortal()
assert made > 1000, made

# Containers, what they hold, code, functions, modules and classes: immortal.
for thing in (table, table["key"], table["key"][2], table["number"], function,
              function.__code__, json, Resource, sys.modules):
    assert sys.getrefcount(thing) >= IMMORTAL, (thing, sys.getrefcount(thing))
# Instances (which may have __del__) and sockets are not, and still end when dropped.
assert sys.getrefcount(resource) < 100
assert sys.getrefcount(ours) < 100
probe = weakref.ref(ours)
del resource
ours.close()
del ours
gc.collect()
assert ended == ["resource"], ended
assert probe() is None
# An immortal object stays usable: changed, copied, counted.
table["key"].append("more")
assert json.loads(json.dumps(table))["key"][-1] == "more"
print("ok")
"""


@pytest.mark.parametrize("runtime", ["python3.12", "python3.13"])
def test_the_templates_objects_become_immortal_and_others_end_as_before(runtime: str) -> None:
    interpreter = RuntimeRegistry().interpreter(runtime)
    if interpreter is None:
        pytest.skip(f"no {runtime} on this host")
    done = subprocess.run(
        [interpreter, "-c", PROBE],
        check=False,
        cwd=PYTHON_BOOTSTRAP.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


def test_nothing_is_changed_where_counts_are_not_where_pep_683_puts_them() -> None:
    # This suite's own interpreter is 3.11: no immortal objects to join.
    assert sys.version_info[:2] == (3, 11)
    assert not immortal.supported()
    assert immortal.make_immortal() == 0
