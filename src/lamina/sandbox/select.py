"""Choosing the isolation backend for this host."""

from __future__ import annotations

import logging

from lamina.sandbox.api import SandboxBackend
from lamina.sandbox.process import ProcessBackend

log = logging.getLogger("lamina.sandbox")


def select_backend(isolation: str) -> SandboxBackend:
    """The strongest backend the host allows, unless a weaker one is asked for."""
    backend = ProcessBackend()
    if isolation in {"auto", "namespace"}:
        log.warning(
            "isolation: namespaces and cgroups are not available in this build; running "
            "functions as plain processes with rlimits (no filesystem isolation)"
        )
    return backend
