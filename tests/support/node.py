"""The Node.js runtime the Node tests run on, and their skip when the host has none."""

from __future__ import annotations

import pytest

from lamina.runtimes.registry import RuntimeRegistry

REGISTRY = RuntimeRegistry()
NODE_RUNTIME = next(
    (name for name in ("nodejs20.x", "nodejs22.x", "nodejs18.x") if REGISTRY.interpreter(name)),
    None,
)
needs_node = pytest.mark.skipif(
    NODE_RUNTIME is None,
    reason="no Node.js 18, 20 or 22 on this host: install Node.js to run these",
)
