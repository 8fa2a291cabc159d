"""Control-plane latency: GetFunction, ListFunctions over 1,000 functions, CreateFunction.

Run with `make bench` or `.venv/bin/python -m bench.control_plane`. Prints figures; asserts nothing.
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ROLE, KeepAlive, fresh_server, report, time_calls

FUNCTIONS = 1000


def archive(size: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as out:
        out.writestr("app.py", "def handler(event, context):\n    return event\n")
        if size > 200:
            out.writestr("blob.bin", os.urandom(size))
    return buffer.getvalue()


def create_body(name: str, code: bytes) -> bytes:
    return json.dumps(
        {
            "FunctionName": name,
            "Runtime": "python3.12",
            "Role": ROLE,
            "Handler": "app.handler",
            "Code": {"ZipFile": base64.b64encode(code).decode()},
        }
    ).encode()


def main() -> None:
    with fresh_server() as server:
        http = KeepAlive(server.port)
        small, large = archive(1024), archive(10 * 1024 * 1024)
        counter = iter(range(10**9))

        def create(code: bytes) -> None:
            status, body = http.request(
                "POST", "/2015-03-31/functions", create_body(f"b{next(counter)}", code)
            )
            assert status == 201, body

        print(f"Lamina control plane, {os.cpu_count()} cores, server at {server.endpoint}")
        report("CreateFunction, 1 KB zip", time_calls(lambda: create(small), 200))
        report("CreateFunction, 10 MB zip", time_calls(lambda: create(large), 20, warmup=2))
        while next(counter) < FUNCTIONS:
            create(small)

        def get() -> None:
            status, _ = http.request("GET", "/2015-03-31/functions/b5")
            assert status == 200

        def list_page() -> None:
            status, _ = http.request("GET", "/2015-03-31/functions?MaxItems=50")
            assert status == 200

        report("GetFunction (keep-alive HTTP)", time_calls(get, 2000))
        report(f"ListFunctions, 50 of {FUNCTIONS}+ (keep-alive)", time_calls(list_page, 500))

        client = server.client()
        report(
            "GetFunction through boto3 (client included)",
            time_calls(lambda: client.get_function(FunctionName="b5"), 500),
        )
        paginator = client.get_paginator("list_functions")
        report(
            f"ListFunctions, all {FUNCTIONS}+ pages via boto3",
            time_calls(lambda: sum(1 for _ in paginator.paginate()), 20, warmup=2),
        )
        http.close()


if __name__ == "__main__":
    main()
