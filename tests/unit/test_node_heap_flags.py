"""The Node command line: Lambda's heap sizing, with the young generation capped."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lamina.runtimes.registry import RuntimeRegistry


def heap_flags(memory_mb: int) -> dict[str, int]:
    # Any executable stands in for node: the command is built, not run.
    registry = RuntimeRegistry({"nodejs20.x": sys.executable})
    argv = registry.command("nodejs20.x", Path("/var/task"), None, memory_mb).argv
    assert argv[0] == sys.executable
    assert argv[1] == "--expose-gc"
    assert argv[-1].endswith("/runtimes/node/bootstrap.cjs")
    flags = {}
    for arg in argv[2:-1]:
        name, _, value = arg.partition("=")
        flags[name] = int(value)
    return flags


@pytest.mark.parametrize(
    ("memory_mb", "semi_space", "old_space"),
    [
        # Lambda's own figures below 180 MB: a tenth young (two semi-spaces), the rest old.
        (128, 6, 116),
        (160, 8, 144),
        # Above, the old generation keeps Lambda's size; semi-spaces stop at 8 MB.
        (256, 8, 231),
        (1769, 8, 1593),
        (10240, 8, 9216),
    ],
)
def test_heap_flags(memory_mb: int, semi_space: int, old_space: int) -> None:
    assert heap_flags(memory_mb) == {
        "--max-semi-space-size": semi_space,
        "--max-old-space-size": old_space,
    }
