"""What the settings ask of network isolation."""

from __future__ import annotations

from lamina.sandbox.network import network_options
from lamina.settings import Settings


def test_network_isolation_is_on_unless_turned_off() -> None:
    assert Settings.from_env({}).network_isolation
    assert network_options(Settings.from_env({})) is not None
    off = Settings.from_env({"LAMINA_NETWORK_ISOLATION": "off"})
    assert not off.network_isolation
    assert network_options(off) is None


def test_the_cluster_store_and_redis_are_the_platforms_endpoints() -> None:
    settings = Settings.from_env(
        {
            "LAMINA_STORE": "postgresql://lamina@192.0.2.10:5433/lamina",
            "LAMINA_REDIS": "redis://192.0.2.11/0",
        }
    )
    options = network_options(settings)
    assert options is not None
    assert options.platform_endpoints == (("192.0.2.10", 5433), ("192.0.2.11", 6379))
