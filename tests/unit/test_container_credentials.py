"""SnapStart's container-credentials endpoint over a real socket: token, path, keep-alive,
and sessions reissued before SDKs would refresh them."""

from __future__ import annotations

import asyncio
import json
import time

from lamina.invoke.container_credentials import ContainerCredentials
from lamina.model.iam import Session
from lamina.sandbox.process import loopback_listener


def session(expires: float, key: str) -> Session:
    return Session(
        access_key_id=key,
        secret="secret",
        token="token",
        expires=expires,
        account="000000000000",
        principal_arn="arn:aws:sts::000000000000:assumed-role/role/fn",
    )


async def exchange(port: int, *requests: bytes) -> bytes:
    """Send `requests` on one connection; everything read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(requests))
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


def get(token: str, path: str = "/2021-04-23/credentials", close: bool = False) -> bytes:
    connection = b"Connection: close\r\n" if close else b""
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {token}\r\n".encode()
        + connection
        + b"\r\n"
    )


def bodies(data: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each response in `data`."""
    found = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        found.append((status, rest[:length]))
        data = rest[length:]
    return found


def test_the_endpoint_answers_its_token_only_and_keeps_connections() -> None:
    issued: list[str] = []

    async def issue() -> Session:
        issued.append(f"ASIA{len(issued)}")
        return session(time.time() + 3600, issued[-1])

    async def scenario() -> list[tuple[int, bytes]]:
        listener = loopback_listener()
        port = listener.getsockname()[1]
        endpoint = ContainerCredentials(issue, f"127.0.0.1:{port}")
        token = endpoint.variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
        assert endpoint.variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == (
            f"http://127.0.0.1:{port}/2021-04-23/credentials"
        )
        stop = await endpoint.serve(listener)
        try:
            return bodies(
                await exchange(
                    port,
                    get(token),
                    get("wrong"),
                    get(token, "/2018-06-01/runtime/invocation/next"),
                    get(token, close=True),
                )
            )
        finally:
            stop()
            endpoint.close()

    replies = asyncio.run(scenario())
    assert [status for status, _ in replies] == [200, 404, 404, 200]
    first = json.loads(replies[0][1])
    assert sorted(first) == ["AccessKeyId", "Expiration", "SecretAccessKey", "Token"]
    assert first["AccessKeyId"] == "ASIA0"
    assert first["Expiration"].endswith("Z")
    assert replies[1][1] == b"cannot get credentials for the provided token\n"
    assert json.loads(replies[3][1]) == first  # an hour left: the same session
    assert issued == ["ASIA0"]


def test_a_session_close_to_expiring_is_replaced() -> None:
    """SDKs refresh credentials within 15 minutes of expiry: what is handed out always has
    more than 30 minutes left, so a refresh gets new ones."""
    lifetimes = [20 * 60, 3600]

    async def issue() -> Session:
        return session(time.time() + lifetimes.pop(0), f"ASIA{len(lifetimes)}")

    async def scenario() -> tuple[bytes, bytes, bytes]:
        endpoint = ContainerCredentials(issue, "127.0.0.1:9001")
        first = await endpoint.body()  # 20 minutes: handed out once, then replaced
        second = await endpoint.body()
        third = await endpoint.body()
        return first, second, third

    first, second, third = asyncio.run(scenario())
    assert json.loads(first)["AccessKeyId"] == "ASIA1"
    assert json.loads(second)["AccessKeyId"] == "ASIA0"
    assert third == second
    assert lifetimes == []


def test_what_one_client_can_hold_of_the_endpoint_is_bounded() -> None:
    """Untrusted code reaches the endpoint: requests pipelined faster than their replies are
    taken close the connection, and connections past the limit are closed at once."""

    async def issue() -> Session:
        return session(time.time() + 3600, "ASIA")

    async def scenario() -> tuple[int, bytes, bytes]:
        listener = loopback_listener()
        port = listener.getsockname()[1]
        endpoint = ContainerCredentials(issue, f"127.0.0.1:{port}")
        token = endpoint.variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
        stop = await endpoint.serve(listener)
        try:
            flood = len(bodies(await exchange(port, *[get(token)] * 50)))
            held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(64)]
            await asyncio.sleep(0.05)
            beyond = await exchange(port, get(token, close=True))
            for _, writer in held:
                writer.close()
            await asyncio.sleep(0.05)
            again = await exchange(port, get(token, close=True))
            return flood, beyond, again
        finally:
            stop()
            endpoint.close()

    flood, beyond, again = asyncio.run(scenario())
    assert flood < 50
    assert beyond == b""  # the 65th connection: closed unanswered
    assert bodies(again)[0][0] == 200  # room again once the others are gone
