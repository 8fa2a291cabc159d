"""The server's heap, settled once it is built: garbage freed first, the rest frozen."""

from __future__ import annotations

import gc
import weakref

from lamina.server import settle_heap


class _Node:
    partner: _Node


def test_settling_frees_garbage_cycles_then_freezes_what_is_left() -> None:
    enabled = gc.isenabled()
    gc.disable()  # so that only settle_heap can free the cycle below
    try:
        node = _Node()
        node.partner = node
        gone = weakref.ref(node)
        kept = _Node()
        kept.partner = kept
        del node
        settle_heap()
        assert gone() is None  # freed, not frozen for good
        assert gc.get_freeze_count() > 0
        assert not any(entry is kept for entry in gc.get_objects())  # out of every pass
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()
