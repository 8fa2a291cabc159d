"""Reading a runtime's output pipe: in bounded helpings, and to its end."""

from __future__ import annotations

import fcntl
import os
import struct
import termios

from lamina.sandbox.log_sink import MemoryLogSink
from lamina.sandbox.output import READ_CHUNK, EnvironmentOutput, read_output

PIPE_BYTES = 1 << 20  # the most an unprivileged process may give a pipe by default
LINE = b"y" * 1023 + b"\n"


def waiting(fd: int) -> int:
    """Bytes in the pipe not read yet."""
    return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0])


def test_one_helping_is_bounded_and_the_rest_waits_in_the_pipe() -> None:
    """A function that wrote a lot at once is read a bounded helping per wake-up of the
    event loop (which then does other work); nothing is lost, and the pipe's end is told."""
    read_fd, write_fd = os.pipe()
    try:
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        os.set_blocking(read_fd, False)
        os.write(write_fd, LINE * (PIPE_BYTES // len(LINE)))
        sink = MemoryLogSink()
        output = EnvironmentOutput(sink, "/aws/lambda/fn", "stream")

        assert read_output(read_fd, output, limit=4 * READ_CHUNK) is False
        assert waiting(read_fd) == PIPE_BYTES - 4 * READ_CHUNK
        assert len(sink.lines) == 4 * READ_CHUNK // len(LINE)

        assert read_output(read_fd, output) is False  # all of it, and no end yet
        assert waiting(read_fd) == 0
        assert len(sink.lines) == PIPE_BYTES // len(LINE)

        os.close(write_fd)
        write_fd = -1
        assert read_output(read_fd, output) is True
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
