"""The control socket's framing, shared by the template (zygote.py) and the SnapStart
snapshot (snapshot.py): messages are a 4-byte big-endian length and JSON, and may carry file
descriptors (SCM_RIGHTS). Runs on the function's interpreter: stdlib only."""

import array
import json
import socket
import struct

HEADER = struct.Struct(">I")


def send(control, message, fds=()):
    body = json.dumps(message).encode()
    data = HEADER.pack(len(body)) + body
    if fds:
        # The descriptors travel with the first bytes. Nothing more is sent once all is
        # out: a reader that took the message may have closed its end already.
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
        data = data[control.sendmsg([data], rights) :]
    if data:
        control.sendall(data)


def receive(control, max_fds=1):
    """One message and the descriptors passed with it, or (None, []) when the platform left."""
    fds = array.array("i")
    header = b""
    while len(header) < HEADER.size:
        data, ancdata, _, _ = control.recvmsg(
            HEADER.size - len(header), socket.CMSG_SPACE(max_fds * fds.itemsize)
        )
        if not data:
            return None, []
        header += data
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    size = HEADER.unpack(header)[0]
    body = b""
    while len(body) < size:
        chunk = control.recv(size - len(body))
        if not chunk:
            return None, []
        body += chunk
    return json.loads(body), list(fds)
