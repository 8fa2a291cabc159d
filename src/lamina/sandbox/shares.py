"""Access points as an environment's root plan carries them (see `mounts.share`)."""

from __future__ import annotations

from collections.abc import Iterable

from lamina.model.networks import FileSystemMount


def plan_file_systems(
    file_systems: Iterable[FileSystemMount], uid: int
) -> tuple[tuple[str, str, int, int, int, int, bool], ...]:
    """`RootPlan.file_systems` for an environment running as `uid` (its gid is the same)."""
    return tuple(
        (
            mount.host_path,
            mount.mount_path,
            mount.uid,
            mount.gid,
            mount.permissions,
            uid,
            mount.read_only,
        )
        for mount in file_systems
    )
