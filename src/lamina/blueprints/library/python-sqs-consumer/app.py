"""An SQS consumer that reports failed messages one by one (partial batch response).

With `ReportBatchItemFailures` on the event source mapping, the messages listed in
`batchItemFailures` go back to the queue and the others are deleted; an empty list means the
whole batch succeeded. Raising instead would return every message of the batch.
"""

import json


def handler(event, context):
    failures = []
    for record in event["Records"]:
        try:
            process(record)
        except Exception as error:
            print(f"message {record['messageId']} failed: {error}")
            failures.append({"itemIdentifier": record["messageId"]})
    print(f"processed {len(event['Records']) - len(failures)} of {len(event['Records'])}")
    return {"batchItemFailures": failures}


def process(record):
    message = json.loads(record["body"])
    if not isinstance(message, dict):
        raise ValueError("the body is not a JSON object")
    print(f"message {record['messageId']}: {message}")
