"""The template's objects made immortal: which ones, and that nothing else changes."""

from __future__ import annotations

import pytest

from tests.support.runtime_probe import run_probe

# Run on the interpreter under test, with the runtime's directory on its path: objects of
# each kind, made immortal or left as they were, then used, dropped and collected.
PROBE = """
import gc, json, socket, sys, weakref
import immortal

IMMORTAL = 0xFFFFFFFF
ended = []

class Resource:
    def __init__(self):
        self.state = {"held": "by an instance"}

    def __del__(self):
        ended.append("resource")

def function():
    return 1

table = {"key": ["a", "list", ("of", "things")], "number": 10**30}
resource = Resource()
ours, theirs = socket.socketpair()
def serve(made):
    # What no module reaches (a request being served) stays mortal.
    request = {"env": {"AWS_SECRET_ACCESS_KEY": "not for the next runtime"}}
    made.append(immortal.make_immortal())
    return sys.getrefcount(request), sys.getrefcount(request["env"])

made = []
assert max(serve(made)) < 100
assert made[0] > 1000, made

# Containers, what they hold, code, functions, modules and classes: immortal.
for thing in (table, table["key"], table["key"][2], table["number"], function,
              function.__code__, json, Resource, sys.modules):
    assert sys.getrefcount(thing) >= IMMORTAL, (thing, sys.getrefcount(thing))
# Instances (which may have __del__) and sockets are not, and still end when dropped.
assert sys.getrefcount(resource) < 100
assert sys.getrefcount(resource.state) < 100  # an instance's state is not walked into
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
    status, output, errors = run_probe(runtime, PROBE)
    assert (status, output) == (0, "ok"), errors


@pytest.mark.parametrize("runtime", ["python3.11", "python3.10"])
def test_nothing_is_changed_where_counts_are_not_where_pep_683_puts_them(runtime: str) -> None:
    probe = "import immortal, sys; print(immortal.supported(), immortal.make_immortal())"
    status, output, errors = run_probe(runtime, probe)
    assert (status, output.split()) == (0, ["False", "0"]), errors
