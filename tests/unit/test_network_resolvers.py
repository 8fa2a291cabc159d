"""Resolvers for environments in their own network namespace."""

from __future__ import annotations

from pathlib import Path

from lamina.sandbox.network.resolvers import namespace_resolv_conf

UPSTREAM = "# systemd-resolved's upstreams\nnameserver 192.0.2.53\nsearch example.test\n"


def files(tmp_path: Path, host: str, upstream: str | None) -> tuple[str, str]:
    (tmp_path / "host").write_text(host)
    if upstream is not None:
        (tmp_path / "upstream").write_text(upstream)
    return str(tmp_path / "host"), str(tmp_path / "upstream")


def test_a_host_resolver_reachable_from_a_namespace_is_kept(tmp_path: Path) -> None:
    host, upstream = files(tmp_path, "nameserver 10.0.0.2\nnameserver 127.0.0.1\n", UPSTREAM)
    assert namespace_resolv_conf(host, upstream) == ""


def test_a_loopback_resolver_is_replaced_by_its_upstreams(tmp_path: Path) -> None:
    host, upstream = files(tmp_path, "nameserver 127.0.0.53\noptions edns0\n", UPSTREAM)
    assert namespace_resolv_conf(host, upstream) == UPSTREAM


def test_without_usable_upstreams_the_hosts_file_stays(tmp_path: Path) -> None:
    host, upstream = files(tmp_path, "nameserver ::1\n", None)
    assert namespace_resolv_conf(host, upstream) == ""
    host, upstream = files(tmp_path, "nameserver 127.0.0.53\n", "nameserver 127.0.0.1\n")
    assert namespace_resolv_conf(host, upstream) == ""
