"""The Node.js runtime over HTTP with boto3: modules, handler styles, context, logs, errors."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from lamina.runtimes.registry import RuntimeRegistry
from tests.support.archives import make_zip
from tests.support.lambda_api import call, log_tail

_REGISTRY = RuntimeRegistry()
RUNTIME = next(
    (name for name in ("nodejs20.x", "nodejs22.x", "nodejs18.x") if _REGISTRY.interpreter(name)),
    None,
)
pytestmark = pytest.mark.skipif(
    RUNTIME is None, reason="no Node.js 18, 20 or 22 on this host: install Node.js to run these"
)

HANDLERS = """
exports.describe = async (event, context) => ({
  event,
  requestId: context.awsRequestId,
  name: context.functionName,
  version: context.functionVersion,
  arn: context.invokedFunctionArn,
  memory: context.memoryLimitInMB,
  group: context.logGroupName,
  stream: context.logStreamName,
  remaining: context.getRemainingTimeInMillis(),
  clientContext: context.clientContext,
  identity: context.identity ?? null,
  waits: context.callbackWaitsForEmptyEventLoop,
  env: Object.fromEntries(
    Object.entries(process.env).filter(([key]) => /^(AWS_|LAMBDA_|_HANDLER|STAGE)/.test(key)),
  ),
});

exports.nested = { deeper: { handler: async () => 'nested' } };

exports.chatty = async () => {
  console.log('plain %s', 'log', { n: 1 });
  console.info('an info');
  console.warn('a warning');
  console.error('an error');
  console.debug('a debug');
  console.log('two\\nlines');
  process.stdout.write('raw stdout\\n');
  return 'ok';
};

exports.callbackWaits = (event, context, callback) => {
  setTimeout(() => console.log('timer fired'), 50);
  callback(null, 'after timer');
};

exports.callbackEarly = (event, context, callback) => {
  context.callbackWaitsForEmptyEventLoop = false;
  setTimeout(() => console.log('late timer'), 60000);
  callback(null, 'early');
};

exports.callbackError = (event, context, callback) => callback(new RangeError('out of range'));

exports.callbackString = (event, context, callback) => callback('plain failure');

exports.legacySucceed = (event, context) => context.succeed({ legacy: true });

exports.syncReturn = () => 42;

exports.firstAnswerWins = async (event, context, callback) => {
  callback(null, 'from callback');
  context.succeed('from succeed');
  return 'from promise';
};

exports.promiseNoAsync = () => Promise.resolve('from a promise');

exports.throws = async () => {
  throw new TypeError('bad thing');
};

exports.rejectsString = () => Promise.reject('rejected value');

exports.neverSettles = async () => new Promise(() => {});

exports.uncaught = (event, context, callback) => {
  setTimeout(() => {
    throw new Error('thrown from a timer');
  }, 1);
};

exports.unhandledRejection = (event, context, callback) => {
  Promise.reject(new Error('nobody listens'));
};

exports.circular = async () => {
  const value = { name: 'loop' };
  value.self = value;
  return value;
};

exports.bigint = async () => ({ n: 10n });

exports.spins = (event, context, callback) => {
  setInterval(() => {}, 1000);
  callback(null, 'never sent');
};

exports.exits = async () => process.exit(3);

exports.counter = async () => {
  globalThis.calls = (globalThis.calls || 0) + 1;
  return globalThis.calls;
};
"""

STREAMING = """
exports.handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  responseStream.setContentType('text/plain');
  responseStream.write('hello ');
  await new Promise((resolve) => setTimeout(resolve, 10));
  responseStream.write(Buffer.from('streamed '));
  responseStream.write({ as: 'json' });
  responseStream.end(context.awsRequestId ? ' world' : '');
});

exports.http = awslambda.streamifyResponse(async (event, responseStream) => {
  const stream = awslambda.HttpResponseStream.from(responseStream, {
    statusCode: 201,
    headers: { 'x-custom': 'yes' },
  });
  stream.write('body');
  stream.end();
});

exports.failsEarly = awslambda.streamifyResponse(async () => {
  throw new Error('before any byte');
});

exports.failsMidway = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write('partial');
  await new Promise((resolve) => setTimeout(resolve, 10));
  throw new Error('after some bytes');
});

exports.notAsync = awslambda.streamifyResponse((event, responseStream) => {
  responseStream.end('x');
});
"""


def raw_call(client: Any, name: str, **kwargs: Any) -> tuple[dict[str, Any], bytes]:
    response = client.invoke(FunctionName=name, Payload=b"{}", **kwargs)
    return response, response["Payload"].read()


@pytest.fixture
def node_function(create_function: Callable[..., Any]) -> Callable[..., str]:
    def make(handler: str, files: dict[str, str | bytes] | None = None, **overrides: Any) -> str:
        config = create_function(
            Runtime=RUNTIME,
            Handler=handler,
            Code={"ZipFile": make_zip(files or {"index.js": HANDLERS})},
            **overrides,
        )
        return str(config["FunctionName"])

    return make


def test_async_handler_gets_event_and_context(
    lambda_client: Any, node_function: Callable[..., str]
) -> None:
    name = node_function(
        "index.describe", MemorySize=256, Environment={"Variables": {"STAGE": "dev"}}
    )
    client_context = base64.b64encode(json.dumps({"custom": {"tenant": "a"}}).encode()).decode()
    response, result = call(lambda_client, name, {"hello": [1, 2]}, ClientContext=client_context)
    assert response["StatusCode"] == 200 and "FunctionError" not in response
    assert result["event"] == {"hello": [1, 2]}
    assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", result["requestId"])
    assert result["name"] == name
    assert result["version"] == "$LATEST"
    assert result["arn"].endswith(f":function:{name}")
    assert result["memory"] == "256"
    assert result["group"] == f"/aws/lambda/{name}"
    assert "[$LATEST]" in result["stream"]
    assert 0 < result["remaining"] <= 3000
    assert result["clientContext"] == {"custom": {"tenant": "a"}}
    assert result["identity"] is None
    assert result["waits"] is True
    env = result["env"]
    assert env["AWS_EXECUTION_ENV"] == f"AWS_Lambda_{RUNTIME}"
    assert env["_HANDLER"] == "index.describe"
    assert env["STAGE"] == "dev"
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert "LAMBDA_TASK_ROOT" in env


def test_environment_is_reused_warm(lambda_client: Any, node_function: Callable[..., str]) -> None:
    name = node_function("index.counter")
    assert [call(lambda_client, name, {})[1] for _ in range(3)] == [1, 2, 3]


@pytest.mark.parametrize(
    ("files", "handler"),
    [
        ({"index.mjs": "export const handler = async (e) => ({ esm: e.n });"}, "index.handler"),
        (
            {
                "package.json": '{"type": "module"}',
                "app.js": "export async function handler(e) { return { esm: e.n }; }",
            },
            "app.handler",
        ),
        (
            {
                "package.json": '{"type": "module"}',
                "legacy.cjs": "exports.handler = async (e) => ({ esm: e.n });",
            },
            "legacy.handler",
        ),
        (
            {"src/handlers/deep.js": "exports.run = async (e) => ({ esm: e.n });"},
            "src/handlers/deep.run",
        ),
        (
            {
                "lib/util.mjs": "export const twice = (n) => n * 2;",
                "main.mjs": (
                    "import { twice } from './lib/util.mjs';\n"
                    "export const handler = async (e) => ({ esm: twice(e.n) / 2 });\n"
                ),
            },
            "main.handler",
        ),
        (
            {
                "node_modules/greeter/package.json": '{"name": "greeter", "main": "main.js"}',
                "node_modules/greeter/main.js": "exports.n = (e) => e.n;",
                "index.js": (
                    "const greeter = require('greeter');\n"
                    "exports.handler = async (e) => ({ esm: greeter.n(e) });\n"
                ),
            },
            "index.handler",
        ),
    ],
    ids=["mjs", "js-type-module", "cjs-in-module-package", "subdirectory", "esm-imports", "deps"],
)
def test_module_kinds(
    lambda_client: Any,
    node_function: Callable[..., str],
    files: dict[str, str],
    handler: str,
) -> None:
    name = node_function(handler, files)
    response, result = call(lambda_client, name, {"n": 7})
    assert "FunctionError" not in response, result
    assert result == {"esm": 7}


def test_nested_handler_property(lambda_client: Any, node_function: Callable[..., str]) -> None:
    assert call(lambda_client, node_function("index.nested.deeper.handler"), {})[1] == "nested"


def test_console_lines_have_aws_format(
    lambda_client: Any, node_function: Callable[..., str]
) -> None:
    response, result = call(lambda_client, node_function("index.chatty"), {}, LogType="Tail")
    assert result == "ok"
    # Split on newlines only: a multi-line message is one record, its newlines turned into \r.
    lines = log_tail(response).rstrip("\n").split("\n")
    request_id = lines[0].split()[2]
    prefix = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\t" + re.escape(request_id)
    expected = [
        rf"{prefix}\tINFO\tplain log {{ n: 1 }}",
        rf"{prefix}\tINFO\tan info",
        rf"{prefix}\tWARN\ta warning",
        rf"{prefix}\tERROR\tan error",
        rf"{prefix}\tDEBUG\ta debug",
        rf"{prefix}\tINFO\ttwo\rlines",
        r"raw stdout",
    ]
    body = [line for line in lines if not line.startswith(("START", "END", "REPORT"))]
    assert len(body) == len(expected), lines
    for line, pattern in zip(body, expected, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern)
    assert lines[0].startswith("START") and lines[-2].startswith("END")


def test_json_log_format_and_level(lambda_client: Any, node_function: Callable[..., str]) -> None:
    name = node_function(
        "index.chatty", LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN"}
    )
    response, result = call(lambda_client, name, {}, LogType="Tail")
    assert result == "ok"
    lines = log_tail(response).rstrip("\n").split("\n")
    # Application records only: with JSON, the platform's lines are `platform.*` records too.
    records = [json.loads(line) for line in lines if line.startswith('{"timestamp"')]
    # INFO and DEBUG are below the function's level and dropped.
    assert [(r["level"], r["message"]) for r in records] == [
        ("WARN", "a warning"),
        ("ERROR", "an error"),
    ]
    request_id = records[0]["requestId"]
    assert re.fullmatch(r"[0-9a-f-]{36}", request_id)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", records[0]["timestamp"])
    assert "raw stdout" in lines


def test_json_log_of_an_error(lambda_client: Any, node_function: Callable[..., str]) -> None:
    name = node_function("index.throws", LoggingConfig={"LogFormat": "JSON"})
    response, result = call(lambda_client, name, {}, LogType="Tail")
    assert result["errorType"] == "TypeError"
    records = [json.loads(line) for line in log_tail(response).split("\n") if line.startswith("{")]
    (record,) = [r for r in records if r.get("level") == "ERROR"]
    assert record["message"]["errorType"] == "TypeError"
    assert record["message"]["errorMessage"] == "bad thing"
    assert record["message"]["stackTrace"][0] == "TypeError: bad thing"


def test_callback_waits_for_empty_event_loop(
    lambda_client: Any, node_function: Callable[..., str]
) -> None:
    response, result = call(lambda_client, node_function("index.callbackWaits"), {}, LogType="Tail")
    assert result == "after timer"
    log = log_tail(response)
    # The timer the handler started ran before the invocation ended.
    assert log.index("timer fired") < log.index("END RequestId")


def test_callback_without_waiting(lambda_client: Any, node_function: Callable[..., str]) -> None:
    name = node_function("index.callbackEarly")
    response, result = call(lambda_client, name, {}, LogType="Tail")
    assert result == "early"
    assert "late timer" not in log_tail(response)
    # The pending timer does not hold the environment: it serves the next call.
    assert call(lambda_client, name, {})[1] == "early"


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        ("index.legacySucceed", {"legacy": True}),
        ("index.syncReturn", None),  # a plain function's return value is ignored, as on AWS
        ("index.promiseNoAsync", "from a promise"),
        ("index.firstAnswerWins", "from callback"),
    ],
)
def test_other_handler_styles(
    lambda_client: Any, node_function: Callable[..., str], handler: str, expected: Any
) -> None:
    response, result = call(lambda_client, node_function(handler), {})
    assert "FunctionError" not in response
    assert result == expected


@pytest.mark.parametrize(
    ("handler", "error_type", "message"),
    [
        ("index.throws", "TypeError", "bad thing"),
        ("index.callbackError", "RangeError", "out of range"),
        ("index.callbackString", "string", "plain failure"),
        ("index.rejectsString", "string", "rejected value"),
        ("index.neverSettles", "Runtime.NodeJsExit", "Runtime exited without providing a reason"),
        ("index.circular", "Runtime.JSONStringifyError", "Unable to stringify response body"),
        ("index.bigint", "Runtime.JSONStringifyError", "Unable to stringify response body"),
    ],
)
def test_function_errors(
    lambda_client: Any,
    node_function: Callable[..., str],
    handler: str,
    error_type: str,
    message: str,
) -> None:
    name = node_function(handler)
    response, result = call(lambda_client, name, {}, LogType="Tail")
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert result["errorType"] == error_type
    assert result["errorMessage"] == message
    assert isinstance(result["trace"], list) and "stackTrace" not in result
    log = log_tail(response)
    assert "\tERROR\tInvoke Error \t{" in log and message in log


def test_error_trace_is_the_stack(lambda_client: Any, node_function: Callable[..., str]) -> None:
    _, result = call(lambda_client, node_function("index.throws"), {})
    assert result["trace"][0] == "TypeError: bad thing"
    assert any("index.js:" in frame for frame in result["trace"][1:])


@pytest.mark.parametrize(
    ("handler", "error_type", "message"),
    [
        ("index.uncaught", "Error", "thrown from a timer"),
        ("index.unhandledRejection", "Runtime.UnhandledPromiseRejection", "Error: nobody listens"),
    ],
)
def test_crashes_fail_the_invocation_only(
    lambda_client: Any,
    node_function: Callable[..., str],
    handler: str,
    error_type: str,
    message: str,
) -> None:
    name = node_function(handler)
    response, result = call(lambda_client, name, {})
    assert response["FunctionError"] == "Unhandled"
    assert (result["errorType"], result["errorMessage"]) == (error_type, message)
    lambda_client.update_function_configuration(FunctionName=name, Handler="index.counter")
    assert call(lambda_client, name, {})[1] == 1


def test_busy_event_loop_with_callback_times_out(
    lambda_client: Any, node_function: Callable[..., str]
) -> None:
    name = node_function("index.spins", Timeout=1)
    response, result = call(lambda_client, name, {})
    assert response["FunctionError"] == "Unhandled"
    assert result["errorType"] == "Sandbox.Timedout"
    lambda_client.update_function_configuration(FunctionName=name, Handler="index.counter")
    assert call(lambda_client, name, {})[1] == 1


def test_exit_in_handler(lambda_client: Any, node_function: Callable[..., str]) -> None:
    response, result = call(lambda_client, node_function("index.exits"), {})
    assert response["FunctionError"] == "Unhandled"
    assert result["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in result["errorMessage"]


@pytest.mark.parametrize(
    ("files", "handler", "error_type", "message"),
    [
        (
            {"index.js": HANDLERS},
            "missing.handler",
            "Runtime.ImportModuleError",
            "Error: Cannot find module 'missing'",
        ),
        (
            {"index.mjs": "import 'no-such-package';\nexport const handler = async () => 1;\n"},
            "index.handler",
            "Error",
            "Cannot find package 'no-such-package' imported from ",
        ),
        (
            {"index.js": HANDLERS},
            "index.nothing",
            "Runtime.HandlerNotFound",
            "index.nothing is undefined or not exported",
        ),
        (
            {"index.js": "exports.value = 1;\n"},
            "index.value",
            "Runtime.HandlerNotFound",
            "index.value is not a function",
        ),
        (
            {"index.js": "exports.handler = async (event => 1;\n"},
            "index.handler",
            "Runtime.UserCodeSyntaxError",
            "SyntaxError: ",
        ),
        ({"index.js": HANDLERS}, "index", "Runtime.MalformedHandlerName", "Bad handler"),
        (
            {"index.js": HANDLERS},
            "../index.handler",
            "Runtime.MalformedHandlerName",
            "'../index.handler' is not a valid handler name.",
        ),
        (
            {"index.js": "throw new Error('init failed');\n"},
            "index.handler",
            "Error",
            "init failed",
        ),
    ],
    ids=[
        "missing-module",
        "missing-esm-package",
        "missing-export",
        "not-a-function",
        "syntax",
        "no-dot",
        "relative",
        "throws-at-load",
    ],
)
def test_init_errors(
    lambda_client: Any,
    node_function: Callable[..., str],
    files: dict[str, str],
    handler: str,
    error_type: str,
    message: str,
) -> None:
    name = node_function(handler, files)
    response, result = call(lambda_client, name, {}, LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    assert result["errorType"] == error_type
    assert result["errorMessage"].startswith(message), result
    assert isinstance(result["trace"], list)
    assert "\tundefined\tERROR\tUncaught Exception \t{" in log_tail(response)
    # The platform stays healthy: fix the function and the next call works.
    lambda_client.update_function_code(FunctionName=name, ZipFile=make_zip({"index.js": HANDLERS}))
    lambda_client.update_function_configuration(FunctionName=name, Handler="index.counter")
    assert call(lambda_client, name, {})[1] == 1


def test_layer_modules_are_found(
    lambda_client: Any, node_function: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    major = RUNTIME.removeprefix("nodejs").removesuffix(".x") if RUNTIME else ""
    layer = lambda_client.publish_layer_version(
        LayerName=unique_name("layer"),
        Content={
            "ZipFile": make_zip(
                {
                    "nodejs/node_modules/shared/index.js": "exports.where = 'nodejs';",
                    f"nodejs/node{major}/node_modules/pinned/index.js": "exports.where = 'nodeNN';",
                }
            )
        },
    )
    source = "exports.handler = async () => [require('shared').where, require('pinned').where];\n"
    name = node_function("index.handler", {"index.js": source}, Layers=[layer["LayerVersionArn"]])
    response, result = call(lambda_client, name, {})
    assert "FunctionError" not in response, result
    assert result == ["nodejs", "nodeNN"]


def test_streaming_handler_through_plain_invoke(
    lambda_client: Any, node_function: Callable[..., str]
) -> None:
    name = node_function("index.handler", {"index.js": STREAMING})
    response, body = raw_call(lambda_client, name)
    assert "FunctionError" not in response, body
    assert body == b'hello streamed {"as":"json"} world'


def test_streaming_http_integration_prelude(
    lambda_client: Any, node_function: Callable[..., str]
) -> None:
    _, body = raw_call(lambda_client, node_function("index.http", {"index.js": STREAMING}))
    prelude, _, rest = body.partition(b"\0" * 8)
    assert json.loads(prelude) == {"statusCode": 201, "headers": {"x-custom": "yes"}}
    assert rest == b"body"


def stream_events(client: Any, name: str) -> list[dict[str, Any]]:
    response = client.invoke_with_response_stream(FunctionName=name, Payload=b"{}")
    stream = response["EventStream"]
    try:
        return list(stream)
    finally:
        stream.close()


def test_invoke_with_response_stream(lambda_client: Any, node_function: Callable[..., str]) -> None:
    events = stream_events(lambda_client, node_function("index.handler", {"index.js": STREAMING}))
    chunks = b"".join(event["PayloadChunk"]["Payload"] for event in events[:-1])
    assert chunks == b'hello streamed {"as":"json"} world'
    assert events[-1] == {"InvokeComplete": {}}


def test_invoke_with_response_stream_error_midway(
    lambda_client: Any, node_function: Callable[..., str]
) -> None:
    events = stream_events(
        lambda_client, node_function("index.failsMidway", {"index.js": STREAMING})
    )
    assert b"".join(event["PayloadChunk"]["Payload"] for event in events[:-1]) == b"partial"
    complete = events[-1]["InvokeComplete"]
    assert complete["ErrorCode"] == "Error"
    assert "after some bytes" in complete["ErrorDetails"]


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        ("index.failsEarly", "before any byte"),
        ("index.failsMidway", "after some bytes"),
        ("index.notAsync", "Streaming does not support non-async handlers."),
    ],
)
def test_streaming_errors(
    lambda_client: Any, node_function: Callable[..., str], handler: str, message: str
) -> None:
    name = node_function(handler, {"index.js": STREAMING})
    response, body = raw_call(lambda_client, name)
    assert response["FunctionError"] == "Unhandled"
    error = json.loads(body)
    assert (error["errorType"], error["errorMessage"]) == ("Error", message)
    # The environment stays usable after a failed stream.
    assert raw_call(lambda_client, name)[0]["FunctionError"] == "Unhandled"


def test_heap_is_sized_from_memory(create_function: Callable[..., Any], lambda_client: Any) -> None:
    source = (
        "const v8 = require('v8');\n"
        "exports.handler = async () => v8.getHeapStatistics().heap_size_limit;\n"
    )
    name = create_function(
        Runtime="nodejs20.x",
        Handler="index.handler",
        MemorySize=256,
        Code={"ZipFile": make_zip({"index.js": source})},
    )["FunctionName"]
    _, limit = call(lambda_client, name, {})
    # V8's own default is several GB; the runtime caps it near the function's memory.
    assert limit < 300 * 1024 * 1024
