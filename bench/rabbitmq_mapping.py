"""Amazon MQ for RabbitMQ mapping throughput: messages/s through a Python no-op function.

A fresh Lamina (with moto's Secrets Manager holding the broker's credentials, and
LAMINA_MQ_BROKERS naming the machine's RabbitMQ at 127.0.0.1:5672) gets a disabled mapping
on a queue filled with MESSAGES small messages; the clock starts when the mapping is
enabled and stops when every message has been invoked (the mapping's InvokedEventCount on
`/_lamina/mappings`) and the queue holds none ready. For comparison, a bare aiormq consumer
in this process consumes and acks the same number from the same broker (the physical floor
of the broker side).

Run with `.venv/bin/python -m bench.rabbitmq_mapping [MESSAGES]`. Prints figures; asserts
nothing. Needs RabbitMQ on 127.0.0.1:5672 (guest/guest).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiormq
from aiormq import spec
from tests.support.archives import make_zip
from tests.support.peers import MotoServer
from tests.support.rabbitmq import AMQP_URL, Rabbit
from tests.support.server import LaminaServer

from bench.harness import ROLE

MESSAGES = 20000
BATCH_SIZES = (100, 10)
BROKER_NAME = "bench-rabbit"
BROKER = f"arn:aws:mq:us-east-1:000000000000:broker:{BROKER_NAME}:b-bench"
NOOP = "def handler(event, context):\n    return None\n"
BODY = b'{"order": 42, "note": "a small message of about a hundred bytes, like most"}'


async def _fill(queue: str, count: int) -> None:
    connection = await aiormq.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        await channel.confirm_delivery()
        properties = spec.Basic.Properties(content_type="application/json", delivery_mode=1)
        pending = []
        for _ in range(count):
            pending.append(channel.basic_publish(BODY, routing_key=queue, properties=properties))
            if len(pending) >= 500:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await connection.close()


async def _bare_consume(queue: str, count: int, prefetch: int) -> float:
    """Seconds for a bare consumer to take and ack `count` messages, acking per 100."""
    connection = await aiormq.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        await channel.basic_qos(prefetch_count=prefetch)
        done = asyncio.get_running_loop().create_future()
        seen = 0

        async def on_message(message: Any) -> None:
            nonlocal seen
            seen += 1
            if seen % 100 == 0 or seen == count:
                await channel.basic_ack(message.delivery_tag, multiple=True)
            if seen == count and not done.done():
                done.set_result(None)

        started = time.perf_counter()
        await channel.basic_consume(queue, on_message)
        await done
        return time.perf_counter() - started
    finally:
        await connection.close()


def _invoked(server: LaminaServer, mapping: str) -> float:
    """The mapping's InvokedEventCount so far (`/_lamina/mappings`)."""
    with urllib.request.urlopen(f"{server.endpoint}/_lamina/mappings", timeout=10) as response:
        rows = json.loads(response.read())["Mappings"]
    for row in rows:
        if row["UUID"] == mapping:
            return float(row["Metrics"].get("InvokedEventCount", {}).get("Sum", 0))
    return 0.0


def _through_lamina(
    server: LaminaServer, rabbit: Rabbit, secret: str, batch_size: int, count: int
) -> float:
    api = server.client("lambda")
    name = f"noop-{uuid.uuid4().hex[:8]}"
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    api.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": NOOP})},
    )
    rabbit.declare(queue)
    try:
        asyncio.run(_fill(queue, count))
        mapping = api.create_event_source_mapping(
            EventSourceArn=BROKER,
            FunctionName=name,
            Queues=[queue],
            SourceAccessConfigurations=[{"Type": "BASIC_AUTH", "URI": secret}],
            BatchSize=batch_size,
            Enabled=False,
        )["UUID"]
        while api.get_event_source_mapping(UUID=mapping)["State"] != "Disabled":
            time.sleep(0.05)
        # A warm environment first: the figure is the poller's, not a cold start's.
        api.invoke(FunctionName=name, Payload=b"{}")
        started = time.perf_counter()
        api.update_event_source_mapping(UUID=mapping, Enabled=True)
        while _invoked(server, mapping) < count or rabbit.state(queue).ready > 0:
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        api.delete_event_source_mapping(UUID=mapping)
        return seconds
    finally:
        while rabbit.state(queue).consumers:
            time.sleep(0.1)
        rabbit.delete(queue)
        api.close()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else MESSAGES
    rabbit = Rabbit()
    with tempfile.TemporaryDirectory(prefix="lamina-bench-mq-") as tmp:
        moto = MotoServer(Path(tmp)).start()
        try:
            secrets = moto.client("secretsmanager")
            secret = secrets.create_secret(
                Name="bench-rabbit",
                SecretString=json.dumps({"username": "guest", "password": "guest"}),
            )["ARN"]
            env = {**moto.env, "LAMINA_MQ_BROKERS": f"{BROKER_NAME}=amqp://127.0.0.1:5672"}
            server = LaminaServer(Path(tmp) / "data", env=env).start()
            try:
                queue = f"bench-bare-{uuid.uuid4().hex[:8]}"
                rabbit.declare(queue)
                try:
                    asyncio.run(_fill(queue, count))
                    bare = asyncio.run(_bare_consume(queue, count, 200))
                finally:
                    rabbit.delete(queue)
                print(f"RabbitMQ -> function, {count} messages of {len(BODY)} bytes, Python no-op")
                print(f"  bare aiormq consume+ack (prefetch 200)   {count / bare:10.0f} msg/s")
                for batch_size in BATCH_SIZES:
                    seconds = _through_lamina(server, rabbit, secret, batch_size, count)
                    print(
                        f"  Lamina mapping, BatchSize {batch_size:<5}         "
                        f"{count / seconds:10.0f} msg/s   "
                        f"({count / batch_size / seconds:6.0f} invocations/s, "
                        f"{100 * bare / seconds:5.1f} % of bare)"
                    )
            finally:
                server.stop()
            secrets.close()
        finally:
            moto.stop()


if __name__ == "__main__":
    main()
