"""Runtime hooks for SnapStart, importable by function code as on Lambda's Python runtimes.

    from snapshot_restore_py import register_before_snapshot, register_after_restore

    @register_before_snapshot
    def close_connections():
        ...

    register_after_restore(reconnect, "db", timeout=5)

Both work as decorators (the function is returned unchanged) and as calls with arguments.
Before the snapshot, hooks run in the reverse order of their registration; after a restore,
in the order of registration. Without SnapStart nothing ever calls them, as on Lambda.
Stdlib only: it runs in the function's interpreter.
"""

_before_snapshot = []
_after_restore = []


def register_before_snapshot(func, *args, **kwargs):
    """Run `func(*args, **kwargs)` once, before the snapshot is taken; returns `func`."""
    _before_snapshot.append((func, args, kwargs))
    return func


def register_after_restore(func, *args, **kwargs):
    """Run `func(*args, **kwargs)` in every environment restored from the snapshot."""
    _after_restore.append((func, args, kwargs))
    return func


def get_before_snapshot():
    """The registered before-snapshot hooks, as (func, args, kwargs), in registration order."""
    return list(_before_snapshot)


def get_after_restore():
    """The registered after-restore hooks, as (func, args, kwargs), in registration order."""
    return list(_after_restore)
