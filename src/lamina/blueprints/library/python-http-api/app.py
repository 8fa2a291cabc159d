"""An HTTP API behind a function URL (payload format 2.0).

GET answers with a greeting for the `name` query parameter; POST echoes the JSON body.
Anything else gets 405. The response is the format-2.0 shape a function URL turns into HTTP.
"""

import base64
import json


def handler(event, context):
    http = event["requestContext"]["http"]
    method, path = http["method"], http["path"]
    print(f"{method} {path} from {http['sourceIp']}")
    if method == "GET":
        name = (event.get("queryStringParameters") or {}).get("name", "world")
        return respond(200, {"message": f"Hello, {name}!", "path": path})
    if method == "POST":
        body = event.get("body") or ""
        if event.get("isBase64Encoded"):
            body = base64.b64decode(body).decode("utf-8")
        try:
            received = json.loads(body) if body else None
        except ValueError:
            return respond(400, {"message": "The body is not JSON."})
        return respond(200, {"path": path, "received": received})
    return respond(405, {"message": f"{method} is not allowed here."})


def respond(status, document):
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(document),
    }
