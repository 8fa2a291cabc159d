"""Changes to a function's files, a burst of saves at a time.

`watchfiles` (inotify, FSEvents...; installed with uvicorn[standard]) rather than polling
mtimes: a function with a large node_modules would otherwise be walked several times a second.
Set WATCHFILES_FORCE_POLLING=1 where file-system events do not arrive (some network and
container mounts).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import watchfiles

from lamina.dev.package import is_ignored

# A burst of saves (an editor writing a temporary file and renaming it, a formatter touching
# several files) ends when nothing has changed for this long.
SETTLE_MS = 150
# The longest one burst may last before its changes are deployed anyway.
MAX_BURST_MS = 2000
# How often the iterator returns with no changes, so the caller can check on other things.
TICK_MS = 250


class SourceWatcher:
    """Yields the relative paths that changed, or an empty list every tick."""

    def __init__(self, directory: Path, excluded: Path | None = None) -> None:
        self.directory = directory.resolve()
        self._excluded = excluded

    def _keep(self, change: watchfiles.Change, path: str) -> bool:
        absolute = Path(path)
        if self._excluded is not None and absolute.is_relative_to(self._excluded):
            return False
        try:
            relative = absolute.relative_to(self.directory)
        except ValueError:
            return False
        return not is_ignored(PurePosixPath(relative.as_posix()))

    def changes(self) -> Iterator[list[str]]:
        """The first item comes once the watch is in place: later edits cannot be missed."""
        for batch in watchfiles.watch(
            self.directory,
            watch_filter=self._keep,
            debounce=MAX_BURST_MS,
            step=SETTLE_MS,
            rust_timeout=TICK_MS,
            yield_on_timeout=True,
        ):
            # Files only: a new directory is no news until a file appears in it.
            paths = {Path(path) for _, path in batch}
            yield sorted(
                path.relative_to(self.directory).as_posix() for path in paths if not path.is_dir()
            )
