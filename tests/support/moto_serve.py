"""moto's standalone server, with receives from FIFO queues that keep order as SQS's do.

Two things moto does that SQS does not, both seen failing the FIFO order test on a loaded
machine (standard queues are left to moto as it is):
- it serves requests on threads and picks a receive's messages without a lock, so two
  receives at once (a mapping's concurrent pollers) could take the same message, or
  messages of one group. Here the picking runs under a lock per queue (the long poll's
  waiting does not);
- messages whose visibility timeout ran out stay "in flight" until a receive passes over
  them one by one, and their group stays locked while any is: of a failed batch of four
  from one group, the fourth came back first. Here they leave flight before each pick, so
  a group's messages come back in order.

Run as `python moto_serve.py [moto_server's arguments]`.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

from moto.server import main
from moto.sqs.models import SQSBackend

_receive = SQSBackend.receive_message
_picking: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
_locks_lock = threading.Lock()
_SPIN_PAUSE_S = 0.01


def _lock_of(queue_name: str) -> threading.Lock:
    with _locks_lock:
        return _picking[queue_name]


def _receive_like_sqs(
    self: SQSBackend,
    queue_name: str,
    count: int,
    wait_seconds_timeout: int,
    visibility_timeout: int,
    message_attribute_names: list[str] | None = None,
) -> list[Any]:
    if not queue_name.endswith(".fifo"):
        return _receive(
            self,
            queue_name,
            count,
            wait_seconds_timeout,
            visibility_timeout,
            message_attribute_names,
        )
    deadline = time.monotonic() + (wait_seconds_timeout or 0)
    while True:
        with _lock_of(queue_name):
            queue = self.get_queue(queue_name)
            for expired in [message for message in queue.pending_messages if message.visible]:
                queue.pending_messages.remove(expired)
            found = _receive(
                self, queue_name, count, 0, visibility_timeout, message_attribute_names
            )
        remaining = deadline - time.monotonic()
        if found or remaining <= 0:
            return found
        # Returns at once while messages are visible but none may be taken (their FIFO
        # group is in flight), as moto's own loop does: a short sleep bounds that spin.
        queue.wait_for_messages(min(1, remaining))  # type: ignore[arg-type]
        time.sleep(min(_SPIN_PAUSE_S, max(0.0, deadline - time.monotonic())))


SQSBackend.receive_message = _receive_like_sqs  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
