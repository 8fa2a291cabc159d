"""Request ids as AWS writes them (`8-4-4-4-12` lower-case hex, a version-4 UUID's shape),
made without a system call each.

`uuid.uuid4()` asks the kernel for 16 random bytes and builds a UUID object per call: a few
microseconds on the invoke path, which mints one id per call. Here each process draws one
random prefix (the first 20 hex digits, version and variant bits set as a v4 UUID has them)
and numbers its ids after it; the number goes through a multiplicative bijection of 48 bits,
so consecutive ids do not look consecutive. Ids are unique within a process by construction
and across processes (cluster nodes, restarts) by the 74 random bits of their prefixes.
"""

from __future__ import annotations

import itertools
import os
import threading

_MASK_48 = (1 << 48) - 1
# Odd, so that multiplying by it modulo 2**48 is a bijection.
_SPREAD = 0x9E3779B97F4B


class RequestIds:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reseed()
        # A child forked from this process (a template) must not repeat the parent's ids.
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        raw = bytearray(os.urandom(16))
        raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        digits = raw.hex()
        self._prefix = f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-"
        # From a random point of the first half, so that no id ends in a run of zeros.
        self._counter = itertools.count(int.from_bytes(raw[10:16]) >> 1)

    def new(self) -> str:
        # `next` on itertools.count is atomic under the GIL; the prefix is read once.
        prefix, number = self._prefix, next(self._counter)
        if number > _MASK_48:
            with self._lock:
                self._reseed()
            prefix, number = self._prefix, next(self._counter)
        return f"{prefix}{(number * _SPREAD) & _MASK_48:012x}"


_ids = RequestIds()
new_request_id = _ids.new
