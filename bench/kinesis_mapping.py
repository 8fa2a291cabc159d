"""Kinesis mapping throughput: records/s from one shard through a Python no-op function.

A fresh Lamina reading moto's Kinesis gets a disabled mapping (TRIM_HORIZON) on a one-shard
stream holding RECORDS small records; the clock starts when the mapping is enabled and
stops when every record has been invoked (the mapping's InvokedEventCount on
`/_lamina/mappings`). For comparison, a bare boto3 loop in this process reads the same
records from the same shard with GetRecords (the physical floor of the source side).

Run with `.venv/bin/python -m bench.kinesis_mapping [RECORDS]`. Prints figures; asserts
nothing.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.archives import make_zip
from tests.support.peers import MotoServer
from tests.support.server import LaminaServer

from bench.harness import ROLE

RECORDS = 10000
BATCH_SIZES = (100, 1000)
NOOP = "def handler(event, context):\n    return None\n"
DATA = b'{"order": 42, "note": "a small record of about a hundred bytes, like most are"}'


def _stream(kinesis: Any, count: int) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    arn: str = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"][
        "StreamARN"
    ]
    for start in range(0, count, 500):
        chunk = min(500, count - start)
        kinesis.put_records(
            StreamARN=arn,
            Records=[{"Data": DATA, "PartitionKey": f"k{i % 16}"} for i in range(chunk)],
        )
    return arn


def _bare_read(kinesis: Any, arn: str, count: int) -> float:
    """Seconds for a bare GetRecords loop to read `count` records from the first shard."""
    started = time.perf_counter()
    iterator = kinesis.get_shard_iterator(
        StreamARN=arn, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    seen = 0
    while seen < count:
        page = kinesis.get_records(ShardIterator=iterator, Limit=10000, StreamARN=arn)
        seen += len(page["Records"])
        iterator = page["NextShardIterator"]
    return time.perf_counter() - started


def _invoked(server: LaminaServer, mapping: str) -> float:
    with urllib.request.urlopen(f"{server.endpoint}/_lamina/mappings", timeout=10) as response:
        rows = json.loads(response.read())["Mappings"]
    for row in rows:
        if row["UUID"] == mapping:
            return float(row["Metrics"].get("InvokedEventCount", {}).get("Sum", 0))
    return 0.0


def _through_lamina(server: LaminaServer, arn: str, batch_size: int, count: int) -> float:
    api = server.client("lambda")
    name = f"noop-{uuid.uuid4().hex[:8]}"
    api.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": NOOP})},
    )
    try:
        mapping = api.create_event_source_mapping(
            EventSourceArn=arn,
            FunctionName=name,
            StartingPosition="TRIM_HORIZON",
            BatchSize=batch_size,
            Enabled=False,
        )["UUID"]
        while api.get_event_source_mapping(UUID=mapping)["State"] != "Disabled":
            time.sleep(0.05)
        # A warm environment first: the figure is the poller's, not a cold start's.
        api.invoke(FunctionName=name, Payload=b"{}")
        started = time.perf_counter()
        api.update_event_source_mapping(UUID=mapping, Enabled=True)
        while _invoked(server, mapping) < count:
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        api.delete_event_source_mapping(UUID=mapping)
        return seconds
    finally:
        api.close()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else RECORDS
    with tempfile.TemporaryDirectory(prefix="lamina-bench-kinesis-") as tmp:
        moto = MotoServer(Path(tmp)).start()
        try:
            kinesis = moto.client("kinesis")
            arn = _stream(kinesis, count)
            bare = _bare_read(kinesis, arn, count)
            server = LaminaServer(Path(tmp) / "data", env=moto.env).start()
            try:
                print(f"Kinesis -> function, one shard, {count} records of {len(DATA)} bytes")
                print(f"  bare boto3 GetRecords loop              {count / bare:10.0f} records/s")
                for batch_size in BATCH_SIZES:
                    seconds = _through_lamina(server, arn, batch_size, count)
                    print(
                        f"  Lamina mapping, BatchSize {batch_size:<5}        "
                        f"{count / seconds:10.0f} records/s   "
                        f"({count / batch_size / seconds:6.1f} invocations/s, "
                        f"{100 * bare / seconds:5.1f} % of bare)"
                    )
            finally:
                server.stop()
            kinesis.close()
        finally:
            moto.stop()


if __name__ == "__main__":
    main()
