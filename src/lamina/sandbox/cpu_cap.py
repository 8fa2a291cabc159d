"""When an environment's CPU cap takes effect: after its init, without delaying its first call.

Init runs at full speed, so cold starts stay short; invocations get a CPU share and quota in
proportion to memory (`EnvironmentCgroup.cap_cpu`). Writing the cap costs the event loop
0.2 to 0.3 ms of cgroup writes (three or four files). Made the moment init ends, they sat
between the runtime's first request for an event and the event itself: on every cold start
that waits for its environment, the first call waited for them too. So the cap is written
right after the first event has been handed over, while the runtime works on it. An
environment no call is waiting for (provisioned, or started for a call another environment
took) is capped `IDLE_GRACE_S` after its init instead (give or take the event loop's own
delay): whatever it left running is not uncapped for longer.
"""

from __future__ import annotations

import asyncio
import contextlib

from lamina.sandbox.cgroups import EnvironmentCgroup
from lamina.sandbox.runtime_api import RuntimeChannel

IDLE_GRACE_S = 0.05


def cap_after_init(channel: RuntimeChannel, cgroup: EnvironmentCgroup, memory_mb: int) -> None:
    """Cap `cgroup`'s CPU once `channel`'s runtime has its first event, or `IDLE_GRACE_S`
    after its init, whichever comes first."""
    timer: asyncio.TimerHandle | None = None
    capped = False

    def cap() -> None:
        nonlocal capped
        if capped:
            return
        capped = True
        if timer is not None:
            timer.cancel()
        with contextlib.suppress(OSError):  # the environment is gone already
            cgroup.cap_cpu(memory_mb)

    def initialised(_: object) -> None:
        nonlocal timer
        if not capped:
            timer = asyncio.get_running_loop().call_later(IDLE_GRACE_S, cap)

    channel.initialized.add_done_callback(initialised)
    channel.on_first_event(cap)
