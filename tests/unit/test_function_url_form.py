"""The form of `FunctionUrl` Lamina hands out: the start-up probe and the choice it drives."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

from lamina.function_urls.url_form import (
    HOST,
    PATH,
    Resolution,
    choose_form,
    probe_localhost,
    probe_name,
    switch_hint,
)
from lamina.settings import Settings

URL_ID = "a" * 32


def answer(*addresses: str) -> Callable[..., list[tuple[Any, ...]]]:
    def resolve(name: str, port: None, **kwargs: Any) -> list[tuple[Any, ...]]:
        assert name == probe_name("us-east-1")
        family = lambda a: socket.AF_INET6 if ":" in a else socket.AF_INET  # noqa: E731
        return [(family(a), socket.SOCK_STREAM, 6, "", (a, 0)) for a in addresses]

    return resolve


def refuse(name: str, port: None, **kwargs: Any) -> list[tuple[Any, ...]]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def test_a_name_the_resolver_maps_to_loopback_reaches_the_server() -> None:
    resolution = probe_localhost("us-east-1", "127.0.0.1", resolve=answer("127.0.0.1", "::1"))
    assert resolution == Resolution(
        True,
        "the system resolver maps lamina-probe.lambda-url.us-east-1.localhost to 127.0.0.1, ::1",
    )


def test_an_unresolvable_name_does_not() -> None:
    resolution = probe_localhost("us-east-1", "127.0.0.1", resolve=refuse)
    assert resolution == Resolution(
        False,
        "the system resolver cannot resolve lamina-probe.lambda-url.us-east-1.localhost "
        "(Name or service not known)",
    )


@pytest.mark.parametrize(
    ("addresses", "endpoint_host"),
    [
        # A search domain with wildcard DNS can answer for anything.
        (("10.1.2.3",), "127.0.0.1"),
        (("127.0.0.1", "10.1.2.3"), "127.0.0.1"),
        # Loopback, but not the address the server is reached on.
        (("::1",), "127.0.0.1"),
        ((), "127.0.0.1"),
    ],
)
def test_a_name_that_leads_elsewhere_does_not(
    addresses: tuple[str, ...], endpoint_host: str
) -> None:
    resolution = probe_localhost("us-east-1", endpoint_host, resolve=answer(*addresses))
    assert not resolution.reaches, resolution


def test_a_server_reached_by_name_needs_only_loopback() -> None:
    assert probe_localhost("us-east-1", "localhost", resolve=answer("::1")).reaches


def test_a_resolver_that_hangs_costs_the_timeout_only() -> None:
    release = threading.Event()

    def hang(name: str, port: None, **kwargs: Any) -> list[tuple[Any, ...]]:
        release.wait(10)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    try:
        resolution = probe_localhost("us-east-1", "127.0.0.1", timeout=0.05, resolve=hang)
    finally:
        release.set()
    assert resolution == Resolution(
        False,
        "the system resolver gave no answer for lamina-probe.lambda-url.us-east-1.localhost "
        "in 0.05 s",
    )


def probe_saying(reaches: bool, calls: list[tuple[str, str]]) -> Callable[[str, str], Resolution]:
    def probe(region: str, host: str) -> Resolution:
        calls.append((region, host))
        return Resolution(reaches, "probed")

    return probe


@pytest.mark.parametrize("reaches", [True, False])
def test_auto_follows_the_resolver(reaches: bool) -> None:
    calls: list[tuple[str, str]] = []
    form = choose_form(Settings(port=9000, region="eu-west-1"), probe_saying(reaches, calls))
    assert calls == [("eu-west-1", "127.0.0.1")]
    assert (form.form, form.reason) == (HOST if reaches else PATH, "probed")
    assert form.url(URL_ID) == (
        f"http://{URL_ID}.lambda-url.eu-west-1.localhost:9000/"
        if reaches
        else f"http://127.0.0.1:9000/lambda-url/{URL_ID}/"
    )


@pytest.mark.parametrize("wanted", [HOST, PATH])
def test_a_forced_form_needs_no_probe(wanted: str) -> None:
    calls: list[tuple[str, str]] = []
    form = choose_form(Settings(function_url_form=wanted), probe_saying(wanted == PATH, calls))
    assert calls == []
    assert (form.form, form.reason) == (wanted, f"LAMINA_FUNCTION_URL_FORM={wanted}")


def test_a_server_published_elsewhere_gets_the_path_form_without_a_probe() -> None:
    calls: list[tuple[str, str]] = []
    settings = Settings(public_url="https://lamina.example/")
    form = choose_form(settings, probe_saying(True, calls))
    assert calls == []
    assert form.url(URL_ID) == f"https://lamina.example/lambda-url/{URL_ID}/"
    # Its host form sits under its own name, for wildcard DNS in front of it.
    assert form.written(HOST, URL_ID) == f"https://{URL_ID}.lambda-url.us-east-1.lamina.example/"
    assert switch_hint(form) == [
        "to hand out the host form, set LAMINA_FUNCTION_URL_FORM=host",
        "with wildcard DNS for *.lambda-url.us-east-1.lamina.example pointing at this server",
    ]


def test_the_form_is_read_from_the_environment_and_checked() -> None:
    assert Settings.from_env({}).function_url_form == "auto"
    assert Settings.from_env({"LAMINA_FUNCTION_URL_FORM": "Path"}).function_url_form == PATH
    with pytest.raises(ValueError, match="LAMINA_FUNCTION_URL_FORM must be auto, host or path"):
        Settings.from_env({"LAMINA_FUNCTION_URL_FORM": "dns"}).check()
