"""Hello world: the smallest useful Lambda function."""

import os


def handler(event, context):
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    print(f"greeting {name}")
    return {
        "message": f"Hello, {name}!",
        "function": context.function_name,
        "region": os.environ.get("AWS_REGION"),
    }
