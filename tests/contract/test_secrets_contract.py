"""The SharedSecrets contract, on a data directory's files and on PostgreSQL: a secret is made
once and read back alike by every instance over one store, however many race to make it,
in threads or in processes. Then what only the files promise: today's `link-secret` file is
the "link" secret, and new files are private."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lamina.store.errors import StorageError
from lamina.store.files.secrets import FileSecrets
from lamina.store.postgres.database import PgDatabase
from lamina.store.postgres.secrets import PgSharedSecrets
from lamina.store.protocols.secrets import SECRET_BYTES, SharedSecrets
from tests.support.backends import Postgres
from tests.support.waiting import wait_until

OpenSecrets = Callable[[], SharedSecrets]
"""Opens another instance over the same store: another process or node, as far as it knows."""

RACERS = 8

# A process that opens the store, waits for the start signal (a file appearing) so that all
# racers call at once, and prints the secret it got.
_RACER = """
import os, sys, time
from pathlib import Path
kind, location, go, ready = sys.argv[1:5]
if kind == "files":
    from lamina.store.files.secrets import FileSecrets
    secrets = FileSecrets(Path(location))
else:
    from lamina.store.postgres.database import PgDatabase
    from lamina.store.postgres.secrets import PgSharedSecrets
    url, schema = location.rsplit(" ", 1)
    secrets = PgSharedSecrets(PgDatabase(url, schema=schema, max_connections=1))
Path(ready).touch()
deadline = time.monotonic() + 30
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.001)
print(secrets.secret("race").hex())
"""


@pytest.fixture(params=["files", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(kind, location) of an empty store."""
    if request.param == "files":
        yield "files", str(tmp_path / "data")
        return
    backend = Postgres(tmp_path)
    backend.database().close()  # makes the schema, so racing processes need not
    yield "postgresql", f"{backend.url} {backend.schema}"
    backend.close()


@pytest.fixture
def open_secrets(store: tuple[str, str]) -> Iterator[OpenSecrets]:
    kind, location = store
    opened: list[Callable[[], None]] = []

    def open_one() -> SharedSecrets:
        if kind == "files":
            return FileSecrets(Path(location))
        url, schema = location.rsplit(" ", 1)
        database = PgDatabase(url, schema=schema, max_connections=2)
        opened.append(database.close)
        return PgSharedSecrets(database)

    yield open_one
    for close in opened:
        close()


def test_a_secret_is_random_and_stays_the_same(open_secrets: OpenSecrets) -> None:
    secrets = open_secrets()
    first = secrets.secret("link")
    assert len(first) == SECRET_BYTES
    assert first != bytes(SECRET_BYTES)
    assert secrets.secret("link") == first


def test_names_have_secrets_of_their_own(open_secrets: OpenSecrets) -> None:
    secrets = open_secrets()
    assert secrets.secret("link") != secrets.secret("node-auth")


def test_another_instance_reads_the_same_secrets(open_secrets: OpenSecrets) -> None:
    made = open_secrets()
    link, auth = made.secret("link"), made.secret("node-auth")
    other = open_secrets()
    assert (other.secret("node-auth"), other.secret("link")) == (auth, link)


def test_racing_threads_agree_on_one_secret(open_secrets: OpenSecrets) -> None:
    instances = [open_secrets() for _ in range(RACERS)]
    start = threading.Barrier(RACERS * 2)

    def race(secrets: SharedSecrets) -> bytes:
        start.wait(10)
        return secrets.secret("race")

    # Two threads per instance: racing inside one instance as well as between instances.
    with ThreadPoolExecutor(RACERS * 2) as pool:
        got = list(pool.map(race, instances * 2))
    assert len(set(got)) == 1
    assert open_secrets().secret("race") == got[0]


def test_racing_processes_agree_on_one_secret(
    store: tuple[str, str], open_secrets: OpenSecrets, tmp_path: Path
) -> None:
    kind, location = store
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{number}" for number in range(RACERS)]
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, kind, location, str(go), str(flag)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for flag in ready
    ]
    try:
        wait_until(lambda: all(flag.exists() for flag in ready), message="racers never started")
        go.touch()
        outputs = [racer.communicate(timeout=60)[0].strip() for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
                racer.wait()
    assert [racer.returncode for racer in racers] == [0] * RACERS
    assert len(set(outputs)) == 1
    assert bytes.fromhex(outputs[0]) == open_secrets().secret("race")


def test_names_that_cannot_be_file_names_are_refused(open_secrets: OpenSecrets) -> None:
    secrets = open_secrets()
    for name in ["", "../link", "Link", "a/b", "x" * 41]:
        with pytest.raises(ValueError):
            secrets.secret(name)


# What only the files promise.


def test_the_link_secret_is_todays_file(tmp_path: Path) -> None:
    existing = os.urandom(SECRET_BYTES)
    (tmp_path / "link-secret").write_bytes(existing)
    assert FileSecrets(tmp_path).secret("link") == existing


def test_a_new_secret_file_is_private_and_alone(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    secrets = FileSecrets(data_dir)
    link, auth = secrets.secret("link"), secrets.secret("node-auth")
    assert (data_dir / "link-secret").read_bytes() == link
    assert (data_dir / "node-auth-secret").read_bytes() == auth
    for name in ["link-secret", "node-auth-secret"]:
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600
    assert sorted(os.listdir(data_dir)) == ["link-secret", "node-auth-secret"]  # no drafts left


def test_an_empty_secret_file_is_refused_not_used(tmp_path: Path) -> None:
    (tmp_path / "link-secret").write_bytes(b"")
    with pytest.raises(StorageError, match="empty"):
        FileSecrets(tmp_path).secret("link")


def test_a_data_directory_that_cannot_be_made_is_a_storage_error(tmp_path: Path) -> None:
    taken = tmp_path / "data"
    taken.write_bytes(b"a file where the directory should be")
    with pytest.raises(StorageError):
        FileSecrets(taken).secret("link")


def test_a_creator_that_loses_the_race_keeps_the_winners_secret(tmp_path: Path) -> None:
    winner = FileSecrets(tmp_path).secret("node-auth")
    loser = FileSecrets(tmp_path)
    loser._create(loser.path("node-auth"))  # as if its read had come just before the win
    assert loser.secret("node-auth") == winner
    assert sorted(os.listdir(tmp_path)) == ["node-auth-secret"]
