"""Settings of asynchronous invocation: read from the environment, refused when unusable."""

from __future__ import annotations

import pytest

from lamina.settings import Settings


def test_async_defaults_follow_aws_timing() -> None:
    settings = Settings.from_env({})
    assert settings.async_retry_scale == 1.0
    assert settings.async_workers == 64
    assert settings.async_lease_s == 30.0


def test_async_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "LAMINA_ASYNC_WORKERS": "8",
            "LAMINA_ASYNC_RETRY_SCALE": "0.01",
            "LAMINA_ASYNC_LEASE_SECONDS": "2",
        }
    )
    assert (settings.async_workers, settings.async_retry_scale, settings.async_lease_s) == (
        8,
        0.01,
        2.0,
    )
    settings.check()


@pytest.mark.parametrize(
    "variable", ["LAMINA_ASYNC_WORKERS", "LAMINA_ASYNC_RETRY_SCALE", "LAMINA_ASYNC_LEASE_SECONDS"]
)
def test_non_positive_async_settings_are_refused(variable: str) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        Settings.from_env({variable: "0"}).check()
