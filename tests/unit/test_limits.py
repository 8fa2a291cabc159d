"""The rlimits environments get, and the passwd entry that names their user."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest

from lamina.sandbox import limits
from lamina.sandbox.namespace import USER_NAME, HostPasswd

MiB = 1024 * 1024
UNLIMITED = resource.RLIM_INFINITY


def test_namespace_limits_are_awss_and_cap_data_only_without_a_cgroup() -> None:
    assert limits.namespace_limits() == limits.AWS_LIMITS
    assert limits.namespace_limits(256)["RLIMIT_DATA"] == (256 * MiB, 256 * MiB)
    assert limits.AWS_LIMITS["RLIMIT_NPROC"] == (742, 742)
    assert limits.AWS_LIMITS["RLIMIT_STACK"] == (8 * MiB, UNLIMITED)


def test_process_limits_as_root_keep_memory_and_disk_enforced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    chosen = limits.process_limits(128, 512)
    assert chosen["RLIMIT_DATA"] == (128 * MiB, 128 * MiB)
    assert chosen["RLIMIT_FSIZE"] == (512 * MiB, 512 * MiB)
    assert chosen["RLIMIT_NPROC"] == (742, 742)
    # No core files in the host directory the code runs from (every environment shares it).
    assert chosen["RLIMIT_CORE"] == (0, 10240 * MiB)


def test_process_limits_of_an_unprivileged_server_never_raise_a_hard_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    own = {
        resource.RLIMIT_STACK: (8 * MiB, 16 * MiB),
        resource.RLIMIT_CORE: (0, 1024),
        resource.RLIMIT_NOFILE: (1024, 4096),
    }
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(resource, "getrlimit", lambda which: own.get(which, (-1, -1)))
    chosen = limits.process_limits(128, 512)
    # The uid's process count is shared with the server and the user's programs: untouched.
    assert "RLIMIT_NPROC" not in chosen
    assert chosen["RLIMIT_STACK"] == (8 * MiB, 16 * MiB)
    assert chosen["RLIMIT_CORE"] == (0, 1024)
    assert chosen["RLIMIT_NOFILE"] == (1024, 1024)
    assert chosen["RLIMIT_DATA"] == (128 * MiB, 128 * MiB)


def test_the_environments_passwd_is_the_hosts_plus_its_user(tmp_path: Path) -> None:
    host = tmp_path / "passwd"
    host.write_text(f"root:x:0:0:root:/root:/bin/bash\n{USER_NAME}:x:5:5::/:/bin/sh")
    passwd = HostPasswd(str(host))
    entry = f"{USER_NAME}:x:2000000007:2000000007::/home/{USER_NAME}:/sbin/nologin\n"
    # A host account of the same name is dropped: it would shadow the environment's.
    assert passwd.with_user(2000000007) == "root:x:0:0:root:/root:/bin/bash\n" + entry
    host.write_text("root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n")
    assert passwd.with_user(2000000008).splitlines()[1:] == [
        "alice:x:1000:1000::/home/alice:/bin/sh",
        entry.replace("2000000007", "2000000008").rstrip("\n"),
    ]
    host.unlink()
    assert passwd.with_user(3) == f"{USER_NAME}:x:3:3::/home/{USER_NAME}:/sbin/nologin\n"
