"""Cold start of a SnapStart version against the normal (template) path, heavy import.

The function's module takes ~200 ms to initialise (a sleep standing for a heavy import, plus
a few real stdlib imports). Each round makes one cold start on `$LATEST` (the template path:
fork, then the import) and one on version 1 published with SnapStart (a fork of the
initialised snapshot, then the after-restore hooks), alternating which goes first. The
handler ends its environment right after answering, so every call is a cold start.

    .venv/bin/python -m bench.snapstart [--rounds 15] [--isolation namespace|process]

Prints the client-side latency of the cold call and the REPORT's Init/Restore Duration,
medians over the rounds (this machine is shared and noisy: medians, not means).
"""

from __future__ import annotations

import argparse
import base64
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.archives import make_zip
from tests.support.lambda_api import ROLE
from tests.support.server import LaminaServer
from tests.support.waiting import wait_until

SOURCE = """
import decimal, email.parser, json, os, threading, time
import http.client, urllib.request, xml.etree.ElementTree
from snapshot_restore_py import register_after_restore

time.sleep(0.2)  # a heavy import: ~200 ms of init
RESTORES = []
register_after_restore(RESTORES.append, "restored")

def handler(event, context):
    # End this environment once the answer is out: the next call is a cold start again.
    threading.Timer(0.02, os._exit, (0,)).start()
    return {"type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"), "restores": RESTORES}
"""

_FIELD = re.compile(r"(?<!Billed )(Init Duration|Restore Duration): ([\d.]+) ms")


def cold_call(client: Any, qualifier: str) -> tuple[float, dict[str, float], str]:
    started = time.perf_counter()
    response = client.invoke(
        FunctionName="heavy", Qualifier=qualifier, Payload=b"{}", LogType="Tail"
    )
    elapsed = (time.perf_counter() - started) * 1000
    body = response["Payload"].read()
    assert "FunctionError" not in response, body
    tail = base64.b64decode(response["LogResult"]).decode()
    fields = {name: float(value) for name, value in _FIELD.findall(tail)}
    return elapsed, fields, body.decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--isolation", default="namespace")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="bench-snapstart-")) / "data"
    server = LaminaServer(data, env={"LAMINA_ISOLATION": args.isolation}).start()
    try:
        client = server.client()
        client.create_function(
            FunctionName="heavy",
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": make_zip({"app.py": SOURCE})},
            MemorySize=1024,
            SnapStart={"ApplyOn": "PublishedVersions"},
        )
        client.get_waiter("function_active_v2").wait(FunctionName="heavy")
        started = time.perf_counter()
        client.publish_version(FunctionName="heavy")
        wait_until(
            lambda: (
                client.get_function_configuration(FunctionName="heavy", Qualifier="1")["State"]
                == "Active"
            ),
            timeout=120,
        )
        publish_ms = (time.perf_counter() - started) * 1000
        results: dict[str, list[float]] = {"$LATEST": [], "1": []}
        reported: dict[str, list[float]] = {"$LATEST": [], "1": []}
        for round_ in range(args.rounds + 1):
            order = ["$LATEST", "1"] if round_ % 2 else ["1", "$LATEST"]
            for qualifier in order:
                elapsed, fields, body = cold_call(client, qualifier)
                expected = "snap-start" if qualifier == "1" else "on-demand"
                assert expected in body, body
                time.sleep(0.15)  # the environment ends; the next call finds none
                if round_ == 0:
                    continue  # warm-up: the template and the snapshot's first pages
                results[qualifier].append(elapsed)
                reported[qualifier].extend(fields.values())
        template = statistics.median(results["$LATEST"])
        snapstart = statistics.median(results["1"])
        print(f"isolation: {args.isolation}; {args.rounds} rounds; 200 ms module init")
        print(f"publish with SnapStart (init + snapshot) ... {publish_ms:8.1f} ms")
        print(
            f"cold start, template path ($LATEST) ....... {template:8.1f} ms at the client, "
            f"Init Duration {statistics.median(reported['$LATEST']):.1f} ms"
        )
        print(
            f"cold start, SnapStart version ............. {snapstart:8.1f} ms at the client, "
            f"Restore Duration {statistics.median(reported['1']):.1f} ms"
        )
        print(f"SnapStart cold start ÷ template cold start: {snapstart / template:.2f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
