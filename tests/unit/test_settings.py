"""Settings are read once from the environment and refuse unsafe combinations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lamina.settings import Settings


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port) == ("127.0.0.1", 9000)
    assert (settings.account_id, settings.region) == ("000000000000", "us-east-1")
    assert settings.data_dir == Path(".lamina")
    assert not settings.authentication_enabled
    settings.check()


def test_environment_overrides() -> None:
    settings = Settings.from_env(
        {
            "LAMINA_ACCOUNT_ID": "123456789012",
            "LAMINA_REGION": "eu-west-1",
            "LAMINA_PORT": "9100",
            "LAMINA_ACCESS_KEY_ID": "AKID",
            "LAMINA_SECRET_ACCESS_KEY": "secret",
        }
    )
    assert settings.account_id == "123456789012"
    assert settings.region == "eu-west-1"
    assert settings.endpoint == "http://127.0.0.1:9100"
    assert settings.authentication_enabled


def test_public_address_without_authentication_is_refused() -> None:
    settings = Settings.from_env({"LAMINA_HOST": "0.0.0.0"})
    with pytest.raises(ValueError, match="without authentication"):
        settings.check()
    Settings.from_env({"LAMINA_HOST": "0.0.0.0", "LAMINA_INSECURE": "1"}).check()
    Settings.from_env(
        {"LAMINA_HOST": "0.0.0.0", "LAMINA_ACCESS_KEY_ID": "a", "LAMINA_SECRET_ACCESS_KEY": "b"}
    ).check()


def test_bad_account_id_is_refused() -> None:
    with pytest.raises(ValueError, match="12 digits"):
        Settings.from_env({"LAMINA_ACCOUNT_ID": "123"}).check()


def test_on_off_flags_read_alike() -> None:
    """Every LAMINA_* switch takes the same words; anything else keeps its default."""
    for word in ("1", "on", "TRUE", "yes"):
        on = Settings.from_env(
            {"LAMINA_INSECURE": word, "LAMINA_AUDIT_INVOKES": word, "LAMINA_ZYGOTE": word}
        )
        assert on.insecure and on.audit_invokes and on.zygote
    for word in ("0", "off", "False", "no"):
        off = Settings.from_env({"LAMINA_ZYGOTE": word, "LAMINA_AUDIT": word})
        assert not off.zygote and not off.audit
    unclear = Settings.from_env(
        {"LAMINA_INSECURE": "maybe", "LAMINA_ZYGOTE": "maybe", "LAMINA_AUDIT": ""}
    )
    assert not unclear.insecure and unclear.zygote and unclear.audit


def test_the_eventbridge_endpoint_is_read_under_either_name() -> None:
    assert Settings.from_env({}).events_endpoint is None
    either = Settings.from_env({"AWS_ENDPOINT_URL_EVENTS": "http://events"})
    assert either.events_endpoint == "http://events"
    both = Settings.from_env(
        {"AWS_ENDPOINT_URL_EVENTS": "http://events", "AWS_ENDPOINT_URL_EVENTBRIDGE": "http://eb"}
    )
    assert both.events_endpoint == "http://eb"


def test_mq_brokers_name_their_amqp_addresses() -> None:
    settings = Settings.from_env(
        {"LAMINA_MQ_BROKERS": "rabbit=amqp://127.0.0.1:5672, other = amqps://mq.example:5671"}
    )
    assert settings.mq_brokers == (
        ("rabbit", "amqp://127.0.0.1:5672"),
        ("other", "amqps://mq.example:5671"),
    )
    assert Settings.from_env({}).mq_brokers == ()


@pytest.mark.parametrize("value", ["rabbit", "rabbit=http://host:5672", "=amqp://host:5672"])
def test_malformed_mq_brokers_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="LAMINA_MQ_BROKERS"):
        Settings.from_env({"LAMINA_MQ_BROKERS": value})


def test_a_malformed_setting_stops_the_command_with_one_clear_line(tmp_path: Path) -> None:
    lamina = Path(sys.executable).parent / "lamina"
    done = subprocess.run(
        [str(lamina), "serve", "--data-dir", str(tmp_path)],
        env={**os.environ, "LAMINA_MQ_BROKERS": "rabbit"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "lamina: LAMINA_MQ_BROKERS: 'rabbit' is not <broker-name>=amqp://host:port"
    )
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("reconcile", "lease"), [("0", "10"), ("-1", "10"), ("4", "10"), ("0.25", "0.5")]
)
def test_pollers_must_reconcile_well_inside_their_lease(reconcile: str, lease: str) -> None:
    settings = Settings.from_env(
        {"LAMINA_POLLER_RECONCILE_SECONDS": reconcile, "LAMINA_MAPPING_LEASE_SECONDS": lease}
    )
    with pytest.raises(ValueError, match="LAMINA_POLLER_RECONCILE_SECONDS"):
        settings.check()
