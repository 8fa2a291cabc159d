"""A provisioned config's status in a cluster, from the shares its workers report ready.

Each worker node holds part of a config's environments (`lamina.cluster.placement`) and sees
only its own. When its whole share is initialised, a node notes in the store, next to the
config, "node N holds n environments of Put T". The config turns READY, with Allocated =
Available = Requested as on AWS, in the transaction whose note completes the set: for every
live worker that the placement gives environments, a note of this Put with exactly that many.
Notes of nodes that died, or of a count the node no longer has to hold, do not count, so a
READY is never early. That transaction also deletes the config's notes: a READY config stays
READY (see `lamina.invoke.provisioned`), and a new Put starts from IN_PROGRESS again. Notes of
a config deleted or failed before it was READY stay until the node notes that config again or
the function is deleted (one small document per node and config at most).

The notes are function children of their own kind, so they go with the function and the
writes run under the store's write lock (one at a time across the cluster).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from lamina.cluster.placement import assignment
from lamina.control.concurrency import PROVISIONED_KIND, ProvisionedConcurrency
from lamina.invoke.provisioned import FAILED, READY
from lamina.store.protocols import FunctionStore

SHARE_KIND = "provisioned-share"

# What a look at a config's notes depended on: the Put's token, this node's share, the live
# workers and the store's change stamp.
_Look = tuple[tuple[str, int], int, tuple[str, ...], int]


class StoredShareReadiness:
    """`ShareReadiness` on the function store shared by the cluster's nodes."""

    def __init__(
        self, store: FunctionStore, me: str, worker_ids: Callable[[], Iterable[str]]
    ) -> None:
        self._store = store
        self._me = me
        self._worker_ids = worker_ids
        # Per config, what the last look found not ready yet, and the store's change stamp
        # then: the pool asks on every pass, and the answer can only change when the store
        # (another node's note) or the live workers change.
        self._not_ready: dict[tuple[str, str], _Look] = {}

    def share_ready(self, function: str, qualifier: str, token: tuple[str, int], held: int) -> None:
        workers = tuple(sorted(set(self._worker_ids())))
        stamp = self._store.change_stamp()
        looked = (token, held, workers, stamp)
        if self._not_ready.get((function, qualifier)) == looked:
            return
        if self._note(function, qualifier, token, held, workers):
            self._not_ready.pop((function, qualifier), None)
        else:
            self._not_ready[(function, qualifier)] = looked

    def _note(
        self,
        function: str,
        qualifier: str,
        token: tuple[str, int],
        held: int,
        workers: tuple[str, ...],
    ) -> bool:
        """Note this node's share; True when the config is no longer waiting for shares."""
        with self._store.transaction():
            doc = self._store.get_child(function, PROVISIONED_KIND, qualifier)
            config = None if doc is None else ProvisionedConcurrency.from_doc(doc)
            if config is None or config.token != token or config.status in (READY, FAILED):
                return True  # replaced, deleted or settled meanwhile: nothing to wait for
            notes = {
                key: note
                for key, note in self._store.list_children(function, SHARE_KIND)
                if note["qualifier"] == qualifier
            }
            mine = {"qualifier": qualifier, "node": self._me, "token": list(token), "held": held}
            # Keyed by node, so a node's later note replaces its earlier one (a qualifier has
            # no "/": an alias name or a version number).
            mine_key = f"{qualifier}/{self._me}"
            if notes.get(mine_key) != mine:
                self._store.put_child(function, SHARE_KIND, mine_key, mine)
                notes[mine_key] = mine
            ready = {
                note["node"]: note["held"]
                for note in notes.values()
                if note["token"] == list(token)
            }
            wanted = assignment(workers, function, qualifier, config.requested)
            if not wanted or any(ready.get(node) != count for node, count in wanted.items()):
                return False
            requested = config.requested
            settled = replace(
                config, status=READY, allocated=requested, available=requested, status_reason=None
            )
            self._store.put_child(function, PROVISIONED_KIND, qualifier, settled.to_doc())
            for key in notes:
                self._store.delete_child(function, SHARE_KIND, key)
            return True
