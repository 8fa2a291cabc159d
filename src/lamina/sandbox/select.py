"""Choosing the isolation backend for this host."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from lamina.sandbox.api import SandboxBackend
from lamina.sandbox.network.options import NetworkOptions
from lamina.sandbox.process import ProcessBackend
from lamina.sandbox.zygote import Templates, ZygoteBackend

log = logging.getLogger("lamina.sandbox")


class IsolationUnavailable(RuntimeError):
    """`isolation=namespace` was asked for on a host that cannot provide it."""


# Why environments keep the host's network when the operator said so.
NETWORK_OFF = "turned off by LAMINA_NETWORK_ISOLATION=off"


def namespace_backend(
    hidden: Iterable[Path] = (),
    network: NetworkOptions | None = None,
    fast_cgroup_moves: bool | None = True,
) -> tuple[SandboxBackend | None, str]:
    """The namespace backend, or None and why this host cannot run it; with `network`,
    every environment gets a network namespace of its own where the host allows it;
    `fast_cgroup_moves` sets the kernel flag that makes cold starts' cgroup moves cheap
    (None: only reports whether it is set)."""
    # Lazy: only Linux hosts that use it pay for ctypes and the probe.
    from lamina.sandbox.cgroups import open_manager
    from lamina.sandbox.namespace import NamespaceBackend, probe

    why = probe()
    if why is not None:
        return None, why
    cgroups, cgroup_reason = open_manager(fast_moves=fast_cgroup_moves)
    backend = NamespaceBackend(
        cgroups, cgroup_reason, hidden, network=network, network_reason=NETWORK_OFF
    )
    return backend, ""


def select_backend(
    isolation: str,
    hidden: Iterable[Path] = (),
    templates: bool = False,
    network: NetworkOptions | None = None,
    fast_cgroup_moves: bool = True,
) -> SandboxBackend:
    """The strongest backend the host allows, unless a weaker one is asked for; with
    `templates`, Python environments fork from pre-initialised templates.

    `hidden` lists host directories functions must never see (the data directory);
    `network` asks for a network namespace per environment (None: the host's network);
    `fast_cgroup_moves` lets the namespace backend set cgroup2 `favordynmods`.
    """
    backend = _isolation_backend(isolation, hidden, network, fast_cgroup_moves)
    if not templates:
        return backend
    # Template children enter the same sandbox a fresh runtime would: the template makes
    # cold starts cheaper, never less isolated.
    if isinstance(backend, ProcessBackend):
        return ZygoteBackend(backend)
    from lamina.sandbox.namespace import NamespaceBackend

    assert isinstance(backend, NamespaceBackend)
    backend.use_templates(Templates(sandboxed=True))
    return backend


def _isolation_backend(
    isolation: str, hidden: Iterable[Path], network: NetworkOptions | None, fast_moves: bool
) -> SandboxBackend:
    if isolation == "process":
        log.warning(
            "isolation: process backend chosen by configuration; functions run as plain "
            "processes with rlimits, can read the host's files and share its network "
            "(its loopback services included)"
        )
        return ProcessBackend()
    backend, why = namespace_backend(hidden, network, fast_moves)
    if backend is not None:
        log.info("isolation: namespace backend (namespaces, cgroups, a uid per environment)")
        for feature, active, detail in backend.describe():
            if not active:
                # Sharing the host's network exposes the platform's own services: say it loud.
                level = logging.WARNING if feature.startswith("network") else logging.INFO
                log.log(level, "isolation: %s not active (%s)", feature, detail)
        return backend
    if isolation == "namespace":
        raise IsolationUnavailable(f"namespace isolation is not available: {why}")
    log.warning(
        "isolation: namespaces and cgroups are unavailable (%s); running functions as plain "
        "processes with rlimits, without filesystem or network isolation",
        why,
    )
    return ProcessBackend()
