"""The output pipe a SnapStart snapshot and its environments share, as the server reads it."""

from __future__ import annotations

import asyncio
import os

from lamina.invoke.snapstart import _drain
from lamina.sandbox.log_sink import MemoryLogSink
from lamina.sandbox.output import EnvironmentOutput


def test_the_pipe_of_a_snapshot_that_died_is_no_longer_watched() -> None:
    """Once every writer is gone the pipe reads as ended for good: still watched, it would
    wake the event loop on every turn (a dead snapshot spun a core until discarded). What
    was written before is taken; the descriptor stays open for the snapshot's discard."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    sink = MemoryLogSink()
    output = EnvironmentOutput(sink, "/aws/lambda/fn", "snapshot")

    async def scenario() -> bool:
        loop = asyncio.get_running_loop()
        loop.add_reader(read_fd, _drain, read_fd, output)
        os.write(write_fd, b"last words\n")
        os.close(write_fd)  # the snapshot died
        while not sink.lines:
            await asyncio.sleep(0.01)
        return loop.remove_reader(read_fd)  # True if it was still watched

    try:
        assert asyncio.run(asyncio.wait_for(scenario(), 10)) is False
        os.fstat(read_fd)  # still open
        assert [line[3] for line in sink.lines] == ["last words"]
    finally:
        os.close(read_fd)
