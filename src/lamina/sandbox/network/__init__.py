"""A network namespace per environment: address plan, firewall, prepared slots, pools."""

from lamina.sandbox.network.options import (
    NetworkOptions,
    network_options,
    platform_endpoints,
    tools,
)
from lamina.sandbox.network.pool import NetworkIsolation, NetworkUnavailable
from lamina.sandbox.network.slots import Slot

__all__ = [
    "NetworkIsolation",
    "NetworkOptions",
    "NetworkUnavailable",
    "Slot",
    "network_options",
    "platform_endpoints",
    "tools",
]
