"""The event-stream framing of InvokeWithResponseStream, decoded with botocore's own parser."""

from __future__ import annotations

import json
import struct
import zlib

import botocore.session
import pytest
from botocore.eventstream import ChecksumMismatch, EventStream, EventStreamBuffer
from botocore.parsers import EventStreamJSONParser

from lamina.invoke.streaming import encode_message, invoke_complete, payload_chunk


def decode(data: bytes) -> list[tuple[dict[str, str], bytes]]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [(message.headers, message.payload) for message in buffer]


def test_payload_chunk_frames_bytes_with_event_headers() -> None:
    ((headers, payload),) = decode(payload_chunk(b"\x00hello\xff"))
    assert payload == b"\x00hello\xff"
    assert headers == {
        ":event-type": "PayloadChunk",
        ":content-type": "application/octet-stream",
        ":message-type": "event",
    }


def test_prelude_and_checksums_follow_the_format() -> None:
    message = encode_message({"a": "b"}, b"xyz")
    total, headers_length, prelude_crc = struct.unpack(">III", message[:12])
    assert total == len(message)
    assert headers_length == 1 + 1 + 1 + 2 + 1  # name length, name, type, value length, value
    assert prelude_crc == zlib.crc32(message[:8])
    assert struct.unpack(">I", message[-4:])[0] == zlib.crc32(message[:-4])


def test_a_corrupted_message_is_refused_by_the_decoder() -> None:
    message = bytearray(payload_chunk(b"data"))
    message[-6] ^= 0xFF
    with pytest.raises(ChecksumMismatch):
        decode(bytes(message))


def test_invoke_complete_carries_only_the_members_given() -> None:
    ((headers, payload),) = decode(invoke_complete("Sandbox.Timedout", "too slow"))
    assert headers[":event-type"] == "InvokeComplete"
    assert headers[":content-type"] == "application/json"
    assert json.loads(payload) == {"ErrorCode": "Sandbox.Timedout", "ErrorDetails": "too slow"}
    ((_, payload),) = decode(invoke_complete(log_result="bG9n"))
    assert json.loads(payload) == {"LogResult": "bG9n"}


class _Raw:
    """A stand-in for urllib3's response: yields the body in uneven pieces."""

    def __init__(self, data: bytes, piece: int) -> None:
        self._pieces = [data[i : i + piece] for i in range(0, len(data), piece)]

    def stream(self) -> list[bytes]:
        return self._pieces

    def close(self) -> None:
        pass


def test_botocore_parses_the_stream_into_modelled_events() -> None:
    model = botocore.session.get_session().get_service_model("lambda")
    output = model.operation_model("InvokeWithResponseStream").output_shape
    body = (
        payload_chunk(b"first ")
        + payload_chunk(b"second")
        + invoke_complete(None, None, "dGFpbA==")
    )
    stream = EventStream(_Raw(body, 7), output.members["EventStream"], EventStreamJSONParser(), "X")
    events = list(stream)
    assert events == [
        {"PayloadChunk": {"Payload": b"first "}},
        {"PayloadChunk": {"Payload": b"second"}},
        {"InvokeComplete": {"LogResult": "dGFpbA=="}},
    ]
