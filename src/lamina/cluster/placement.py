"""Which worker holds which provisioned environments.

A config's environments are numbered 0..count-1, and environment i lives on the worker that
rendezvous hashing ranks first for the key f"{function}:{qualifier}:{i}". Every node works out
the same placement from the same list of live workers without asking anyone. A worker that
leaves hands only its own environments to the others; one that joins takes about 1/n of each
other worker's. Where environment i lives does not depend on the count, so a node's part of
the environments numbered a..b-1 is `share(..., b) - share(..., a)`, and a larger request adds
environments without moving any.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from lamina.cluster.rendezvous import rank


def home(worker_ids: Iterable[str], function: str, qualifier: str, index: int) -> str:
    """The worker that holds environment `index` of the config (there must be one worker)."""
    return rank(f"{function}:{qualifier}:{index}", worker_ids)[0]


def assignment(
    worker_ids: Iterable[str], function: str, qualifier: str, count: int
) -> dict[str, int]:
    """How many of the config's `count` environments each worker holds; workers given none
    are left out, and with no worker nobody holds any."""
    ids = sorted(set(worker_ids))
    if not ids:
        return {}
    return dict(Counter(home(ids, function, qualifier, index) for index in range(count)))


def share(worker_ids: Iterable[str], me: str, function: str, qualifier: str, count: int) -> int:
    """How many of the config's `count` environments worker `me` holds (0 when `me` is not
    among the live workers)."""
    ids = set(worker_ids)
    if me not in ids:
        return 0
    return assignment(ids, function, qualifier, count).get(me, 0)


class PlacementView:
    """The workers a node places provisioned environments over: membership's live workers,
    except that an empty view keeps the last one seen. A view empties when the node registry
    has not answered for longer than the expiry (the node cannot even see itself); then
    every node keeping what it holds beats every node dropping all its environments, or
    every node starting all of them."""

    def __init__(
        self, me: str, worker_ids: Callable[[], Iterable[str]], version: Callable[[], int]
    ) -> None:
        self._me = me
        self._worker_ids = worker_ids
        self._version = version
        self._last: tuple[int, list[str]] = (0, [])

    def _current(self) -> tuple[int, list[str]]:
        # The version is read first: if the workers change in between, the next read sees a
        # new version, and whoever cached by version works the placement out again.
        version = self._version()
        ids = sorted(set(self._worker_ids()))
        # A worker that was placing and finds itself missing sees a passing state (Redis
        # restarted empty and it has not joined again yet), not its own death: it keeps
        # what it holds rather than drop its share and take it back a second later.
        lost_myself = self._me in self._last[1] and self._me not in ids
        if ids and not lost_myself:
            self._last = (version, ids)
        return self._last

    def version(self) -> int:
        """Moves whenever `ids()` may have changed (ProvisionedPool's `placement_version`)."""
        return self._current()[0]

    def ids(self) -> list[str]:
        return self._current()[1]

    def share(self, function: str, qualifier: str, count: int) -> int:
        """ProvisionedPool's `share`."""
        return share(self.ids(), self._me, function, qualifier, count)
