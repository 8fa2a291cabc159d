"""The uid behind a loopback TCP connection, by netlink and by /proc/net/tcp."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from lamina.sandbox.peercred import _netlink_uid, _proc_uid, peer_uid


@pytest.fixture
def connection() -> Iterator[tuple[tuple[str, int], tuple[str, int]]]:
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    accepted, peer = server.accept()
    with server, client, accepted:
        yield peer, accepted.getsockname()


def test_both_lookups_find_the_connecting_uid(
    connection: tuple[tuple[str, int], tuple[str, int]],
) -> None:
    peer, local = connection
    assert _netlink_uid(peer, local) == os.getuid()
    assert _proc_uid(peer, local) == os.getuid()
    assert peer_uid(peer, local) == os.getuid()


def test_an_unknown_connection_has_no_uid(
    connection: tuple[tuple[str, int], tuple[str, int]],
) -> None:
    _, local = connection
    stranger = ("127.0.0.1", 1)
    assert _netlink_uid(stranger, local) is None
    assert _proc_uid(stranger, local) is None
    assert peer_uid(stranger, local) is None
