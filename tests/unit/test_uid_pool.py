"""Environment uids: a snapshot's run of uids stays consecutive however the pool churned."""

from __future__ import annotations

from pathlib import Path

from lamina.sandbox.namespace import UID_BASE, UID_BLOCK, UidPool
from lamina.sandbox.snapshots import SnapshotIsolation


def test_a_run_is_consecutive_after_the_pool_churned(tmp_path: Path) -> None:
    pool = UidPool(tmp_path / "locks")
    try:
        taken = [pool.acquire() for _ in range(UID_BLOCK)]
        for uid in taken[::2]:  # every other uid back: no two free uids are neighbours
            pool.release(uid)
        run = pool.acquire_run(257)
        assert run == list(range(run[0], run[0] + 257))
        assert run[0] >= UID_BASE + UID_BLOCK  # a block of its own was claimed for it
        isolation = SnapshotIsolation(run, None, lambda: None)
        assert isolation.uid_map().count("\n") == 1
        # Single uids still come first from what was given back, and never from the run.
        single = pool.acquire()
        assert single in taken[::2]
        assert single not in run
    finally:
        pool.close()


def test_a_run_reuses_freed_uids_when_they_are_consecutive(tmp_path: Path) -> None:
    pool = UidPool(tmp_path / "locks")
    try:
        first = pool.acquire_run(300)
        for uid in first:
            pool.release(uid)
        again = pool.acquire_run(300)
        assert again == first  # no second block claimed
        assert len(list((tmp_path / "locks").glob("*.lock"))) == 1
    finally:
        pool.close()
