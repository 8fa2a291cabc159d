"""Lamina's Python runtime on its own: the CPU its own code spends per invocation.

That CPU is not the server's, but it is spent inside the environment, so it comes out of the
function's share: at 128 MB a function gets about a fourteenth of a vCPU. This bench runs
the runtime's real loop (`bootstrap.serve`) on the functions' interpreter, with a stand-in
for the Runtime API's socket that answers each pipelined response-and-next with a 202 and
the next event as the server writes them (request id, deadline, ARN, trace id). The handler
is a no-op that returns `{}`, so the figure is the loop: reading and parsing the replies,
the context, the trace variable, encoding the answer and framing the next request. No
system call is made, so the kernel's share of a real call is not in it.

Run: `.venv/bin/python -m bench.python_runtime` (BENCH_QUICK=1 for fewer calls). Prints the
median over rounds, in µs of CPU per invocation; asserts nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.suite.peers import interpreter

RUNTIME_DIR = Path(__file__).resolve().parent.parent / "src/lamina/runtimes/python"
QUICK = bool(os.environ.get("BENCH_QUICK"))
CALLS = 20_000 if QUICK else 200_000
ROUNDS = 3 if QUICK else 7

# Runs in the child, on the functions' interpreter, with the runtime's directory on its path.
LOOP = r"""
import sys, time
import bootstrap

calls = int(sys.argv[1])
event = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Lambda-Runtime-Aws-Request-Id: 8f1c2b3a-1111-2222-3333-444455556666\r\n"
    b"Lambda-Runtime-Deadline-Ms: 1796000000000\r\n"
    b"Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:f\r\n"
    b"Lambda-Runtime-Trace-Id: Root=1-5f84c7a8-1234567890abcdef12345678;"
    b"Parent=1234567890abcdef;Sampled=0\r\n"
    b"Date: Sun, 06 Dec 2026 02:00:00 GMT\r\nContent-Length: 2\r\n\r\n{}"
)
accepted = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n"
accepted += b'{"status":"OK"}\n'


class RuntimeApiStandIn:
    def sendall(self, data):
        pass

    def recv(self, size):
        return accepted + event


class Done(Exception):
    pass


served = 0


def handler(event, context):
    global served
    served += 1
    if served > calls:
        raise Done
    return {}


def stop(error, error_type=None):
    raise error


client = bootstrap.RuntimeClient("127.0.0.1:9001")
client._socket = RuntimeApiStandIn()
client._pending = b"pending"  # as after a first answer: every read is a 202, then an event
bootstrap.error_payload = stop
started = time.process_time()
try:
    bootstrap.serve(client, handler)
except Done:
    pass
print((time.process_time() - started) / calls * 1e6)
"""


def one_round(python: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(RUNTIME_DIR), "AWS_LAMBDA_FUNCTION_NAME": "f"}
    out = subprocess.run(
        [python, "-c", LOOP, str(CALLS)], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout)


def main() -> None:
    python = interpreter("python3.12")
    figures = sorted(one_round(python) for _ in range(ROUNDS))
    print(
        f"Python runtime loop: {figures[len(figures) // 2]:.2f} µs per invocation "
        f"({figures[0]:.2f}-{figures[-1]:.2f}), {ROUNDS} rounds of {CALLS:,} calls, {python}"
    )


if __name__ == "__main__":
    main()
