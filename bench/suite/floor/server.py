"""A minimal stdlib HTTP server relaying each invoke to a warm child process over a pipe.

The least any Python platform that keeps functions warm in separate processes can cost: one
asyncio HTTP/1.1 parse, one line written to a pipe, one line read back. No API model, no
isolation, no logs, no limits. Children are spawned on a function's first call (its cold
start) and kept, one per concurrent request.

Usage: python server.py CONFIG_JSON PORT, where CONFIG_JSON maps each function name to the
argv of its child. `DELETE /functions/NAME` stops that function's children.
Standalone on purpose: it imports nothing from Lamina or the suite.
"""

from __future__ import annotations

import asyncio
import json
import sys

INVOKE_PREFIX = b"/2015-03-31/functions/"
# A 1 MB payload is one line on the pipe; asyncio's default line limit is 64 KiB.
LINE_LIMIT = 16 * 1024 * 1024


class Pool:
    """The warm children of one function; a child serves one request at a time."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.idle: list[asyncio.subprocess.Process] = []
        self.all: list[asyncio.subprocess.Process] = []

    async def invoke(self, event: bytes) -> bytes:
        if self.idle:
            child = self.idle.pop()
        else:
            child = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=LINE_LIMIT,
            )
            self.all.append(child)
        assert child.stdin is not None and child.stdout is not None
        # A JSON document stays the same document with its newlines turned into spaces.
        child.stdin.write(event.replace(b"\n", b" ") + b"\n")
        await child.stdin.drain()
        answer = await child.stdout.readline()
        self.idle.append(child)
        return answer.rstrip(b"\n")

    def stop(self) -> None:
        for child in self.all:
            if child.returncode is None:
                child.kill()
        self.idle.clear()
        self.all.clear()


def response(status: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


async def serve_connection(
    pools: dict[str, Pool], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            method, path, _ = head.split(b" ", 2)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length) if length else b""
            name = path.removeprefix(INVOKE_PREFIX).split(b"/", 1)[0].decode()
            if method == b"DELETE":
                name = path.rsplit(b"/", 1)[-1].decode()
                pools[name].stop()
                writer.write(response(b"204 No Content", b""))
            elif path.startswith(INVOKE_PREFIX) and name in pools:
                writer.write(response(b"200 OK", await pools[name].invoke(body or b"{}")))
            else:
                writer.write(response(b"404 Not Found", b'{"message": "no such function"}'))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionResetError):
        pass
    finally:
        writer.close()


async def main(config_path: str, port: int) -> None:
    with open(config_path) as handle:
        pools = {name: Pool(argv) for name, argv in json.load(handle).items()}
    server = await asyncio.start_server(
        lambda reader, writer: serve_connection(pools, reader, writer),
        "127.0.0.1",
        port,
        limit=LINE_LIMIT,
    )
    print("serving", flush=True)
    try:
        async with server:
            await server.serve_forever()
    finally:
        for pool in pools.values():
            pool.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
