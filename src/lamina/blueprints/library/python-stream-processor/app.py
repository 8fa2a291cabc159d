"""A stream processor for Kinesis and DynamoDB Streams, with partial batch responses.

Records of a shard must be handled in order, so the function stops at the first record
that fails and reports its sequence number in `batchItemFailures`: Lambda then checkpoints
before it and retries from there. An empty list means the whole batch succeeded.
"""

import base64
import json


def handler(event, context):
    handled = 0
    for record in event["Records"]:
        try:
            process(record)
        except Exception as error:
            sequence = sequence_number(record)
            print(f"record {sequence} failed: {error}")
            return {"batchItemFailures": [{"itemIdentifier": sequence}], "handled": handled}
        handled += 1
    print(f"handled {handled} records")
    return {"batchItemFailures": [], "handled": handled}


def sequence_number(record):
    if record["eventSource"] == "aws:kinesis":
        return record["kinesis"]["sequenceNumber"]
    return record["dynamodb"]["SequenceNumber"]


def process(record):
    if record["eventSource"] == "aws:kinesis":
        data = json.loads(base64.b64decode(record["kinesis"]["data"]))
        print(f"kinesis {record['kinesis']['partitionKey']}: {data}")
    else:
        change = record["dynamodb"]
        print(f"dynamodb {record['eventName']} {change['Keys']}: {change.get('NewImage')}")
