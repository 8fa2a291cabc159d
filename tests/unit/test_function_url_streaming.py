"""The HTTP prelude of a streamed response, found whatever the chunk boundaries."""

from __future__ import annotations

import pytest

from lamina.function_urls.responses import MalformedResponse
from lamina.function_urls.streaming import (
    PRELUDE_MAX_BYTES,
    SEPARATOR,
    PreludeSplitter,
    prelude_response,
)

PRELUDE = b'{"statusCode":201,"headers":{"x-a":"}{\\"\\\\"},"cookies":["c=1"]}'


def split(chunks: list[bytes]) -> tuple[dict[str, object] | None, bytes, int]:
    """(prelude, body, index of the chunk at which the splitter decided)."""
    splitter = PreludeSplitter()
    body = b""
    decided_at = -1
    for index, chunk in enumerate(chunks):
        body += splitter.feed(chunk)
        if splitter.decided and decided_at < 0:
            decided_at = index
    body += splitter.finish()
    return splitter.prelude, body, decided_at


@pytest.mark.parametrize("cut", [1, 10, len(PRELUDE), len(PRELUDE) + 3, len(PRELUDE) + 8])
def test_a_prelude_is_split_off_wherever_the_chunks_break(cut: int) -> None:
    stream = PRELUDE + SEPARATOR + b"body"
    prelude, body, _ = split([stream[:cut], stream[cut:]])
    assert prelude == {"statusCode": 201, "headers": {"x-a": '}{"\\'}, "cookies": ["c=1"]}
    assert body == b"body"


def test_an_empty_first_chunk_decides_nothing() -> None:
    prelude, body, _ = split([b"", PRELUDE + SEPARATOR + b"x"])
    assert (prelude is not None, body) == (True, b"x")


def test_one_byte_at_a_time() -> None:
    stream = PRELUDE + SEPARATOR + b"xyz"
    prelude, body, _ = split([stream[i : i + 1] for i in range(len(stream))])
    assert prelude is not None
    assert body == b"xyz"


@pytest.mark.parametrize(
    "chunks",
    [
        [b"plain text", b" more"],
        [b"[1,2]", b"\x00" * 8],
        # JSON lines: the first object is followed by a newline, not by the separator.
        [b'{"a":1}\n{"b":2}\n'],
        [b'{"a":1}', b"\n"],
        [b'{"a":1}\x00\x00x'],
    ],
)
def test_streams_without_a_prelude_are_all_body(chunks: list[bytes]) -> None:
    prelude, body, _ = split(chunks)
    assert prelude is None
    assert body == b"".join(chunks)


def test_other_streams_are_decided_at_their_first_chunk() -> None:
    assert split([b"hello", b"world"])[2] == 0
    assert split([b'{"a":1}\n', b"more"])[2] == 0


def test_an_unterminated_object_is_held_back_only_up_to_the_limit() -> None:
    big = b'{"a":"' + b"x" * PRELUDE_MAX_BYTES
    prelude, body, decided_at = split([big[:100], big[100:], b"tail"])
    assert (prelude, body, decided_at) == (None, big + b"tail", 1)


def test_prelude_response_defaults_and_validation() -> None:
    dropped: list[str] = []
    assert prelude_response(None, dropped) == (
        200,
        [(b"content-type", b"application/octet-stream")],
    )
    status, headers = prelude_response(
        {"statusCode": 202, "headers": {"Content-Type": "text/plain"}, "cookies": ["a=1"]},
        dropped,
    )
    assert status == 202
    assert headers == [(b"content-type", b"text/plain"), (b"set-cookie", b"a=1")]
    assert prelude_response({"headers": {"x": "1"}}, dropped)[0] == 200
    with pytest.raises(MalformedResponse, match="statusCode"):
        prelude_response({"statusCode": "oops"}, dropped)
