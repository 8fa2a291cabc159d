"""Everything survives a restart; a kill -9 mid-write loses nothing that was acknowledged."""

from __future__ import annotations

import sqlite3
import stat
import threading
import urllib.request
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError, ConnectionError, EndpointConnectionError

from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until


def create(client: Any, name: str, archive: bytes) -> dict[str, Any]:
    result: dict[str, Any] = client.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": archive},
    )
    return result


def test_state_survives_restart(data_dir: Path) -> None:
    server = LaminaServer(data_dir).start()
    client = server.client()
    archive = make_zip({"app.py": "x = 1\n"})
    create(client, "keeper", archive)
    config = client.get_function_configuration(FunctionName="keeper")  # Active by now
    client.publish_version(FunctionName="keeper")
    client.create_alias(FunctionName="keeper", Name="live", FunctionVersion="1")
    server.stop()

    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    restarted = LaminaServer(data_dir, port=server.port).start()
    try:
        client = restarted.client()
        found = client.get_function(FunctionName="keeper")
        assert found["Configuration"]["RevisionId"] == config["RevisionId"]
        with urllib.request.urlopen(found["Code"]["Location"]) as response:
            assert response.read() == archive
        assert client.get_alias(FunctionName="keeper", Name="live")["FunctionVersion"] == "1"
        # Version numbers continue; they are never reused.
        client.update_function_configuration(FunctionName="keeper", Description="v2")
        assert client.publish_version(FunctionName="keeper")["Version"] == "2"
    finally:
        restarted.stop()


def test_kill_minus_nine_mid_writes_keeps_every_acknowledged_write(data_dir: Path) -> None:
    server = LaminaServer(data_dir).start()
    acknowledged: list[tuple[str, str]] = []
    stop = threading.Event()

    def writer(worker: int) -> None:
        client = server.client()
        index = 0
        while not stop.is_set():
            name = f"w{worker}-{index}"
            try:
                archive = make_zip({"app.py": f"n = {index}\n" + "#" * 20_000})
                config = create(client, name, archive)
            except (ClientError, ConnectionError, EndpointConnectionError):
                return
            acknowledged.append((name, config["CodeSha256"]))
            index += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(
            lambda: len(acknowledged) >= 40,
            timeout=60,
            interval=0.01,
            message="the writers never had 40 writes acknowledged",
        )
    finally:
        server.kill()
        stop.set()
    for thread in threads:
        thread.join(30)

    with sqlite3.connect(data_dir / "lamina.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    connection.close()
    restarted = LaminaServer(data_dir, port=server.port).start()
    try:
        client = restarted.client()
        for name, sha in acknowledged:
            found = client.get_function(FunctionName=name)
            assert found["Configuration"]["CodeSha256"] == sha
            with urllib.request.urlopen(found["Code"]["Location"]) as response:
                assert len(response.read()) == found["Configuration"]["CodeSize"]
    finally:
        restarted.stop()
