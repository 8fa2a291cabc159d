"""Lamina's Python runtime: a fast, stdlib-only client of the Lambda Runtime API.

It runs inside an execution environment on any CPython from 3.9 to 3.13, so it imports only
the standard library and avoids syntax newer than 3.9. It behaves as AWS's Python runtime does:
handler resolution, the context object, error payloads and the log line format.

Response streaming (a Lamina extension: AWS's Python runtime has none). A handler that is a
generator function, or that returns any other iterator, streams its response: each item it
yields is sent to the client as soon as it is produced (one `PayloadChunk` of
InvokeWithResponseStream). Items may be bytes, str (sent as UTF-8) or anything else JSON can
encode (sent as its JSON text); empty items are skipped. Invoked with plain Invoke, the same
handler's chunks are concatenated into one response. An exception raised before the first item
is an ordinary function error; one raised later ends the stream and is reported in its
`InvokeComplete` event. For example::

    def handler(event, context):
        yield "thinking...\n"
        yield expensive_answer(event)

Lists, tuples, dicts and strings are returned whole as JSON, as before.
"""

import base64
import collections
import collections.abc
import decimal
import importlib
import json
import logging
import os
import socket
import sys
import time
import traceback

try:
    import ctypes
except ImportError:  # an interpreter built without libffi: os.environ alone
    ctypes = None

RUNTIME_PATH = "/2018-06-01/runtime"
# Headers of an event, as the response parser keys them (lower-cased).
HEADER_REQUEST_ID = "lambda-runtime-aws-request-id"
HEADER_DEADLINE = "lambda-runtime-deadline-ms"
HEADER_FUNCTION_ARN = "lambda-runtime-invoked-function-arn"
HEADER_TRACE_ID = "lambda-runtime-trace-id"
HEADER_CLIENT_CONTEXT = "lambda-runtime-client-context"
HEADER_COGNITO_IDENTITY = "lambda-runtime-cognito-identity"
HEADER_TENANT_ID = "lambda-runtime-aws-tenant-id"
# Headers the runtime sends.
HEADER_ERROR_TYPE = "Lambda-Runtime-Function-Error-Type"
HEADER_ERROR_BODY = "Lambda-Runtime-Function-Error-Body"
HEADER_RESPONSE_MODE = "Lambda-Runtime-Function-Response-Mode"

BUILTIN_MODULES = frozenset(sys.builtin_module_names)


TRACE_VARIABLE = "_X_AMZN_TRACE_ID"


def _libc_putenv():
    """putenv(3), looked up once: in a template, before its runtimes are forked."""
    if ctypes is None:
        return None
    try:
        putenv = ctypes.CDLL(None).putenv
    except (AttributeError, OSError):
        return None
    putenv.argtypes = (ctypes.c_char_p,)
    putenv.restype = ctypes.c_int
    # Called once here, so that what a first call sets up is set up in a template and
    # shared by the runtimes it forks rather than copied into each. The entry is held
    # until unsetenv() has removed it: the environment points into it until then.
    probe = TRACE_VARIABLE.encode() + b"="
    if putenv(probe) == 0:
        os.unsetenv(TRACE_VARIABLE)
    return putenv


_PUTENV = _libc_putenv()


class TraceVariable:
    """`_X_AMZN_TRACE_ID`, which changes with every invocation, set without growing the process.

    Assigning to os.environ calls setenv(3), and glibc keeps every value ever set that way
    for the life of the process: a new trace id per invocation grew a runtime by about 112
    bytes a call, never freed (107 MiB over a million invocations). putenv(3) copies
    nothing: the C environment points into a bytes object held here, and os.environ's own
    mapping is set alongside, so the handler, C code and child processes see the same value.
    POSIX lets a later putenv() invalidate what getenv() returned; the last `HELD` values
    are kept all the same, so C code still reading one an invocation or a few later does
    not read freed memory.
    """

    _KEY = TRACE_VARIABLE.encode()
    HELD = 8

    def __init__(self):
        self._held = collections.deque(maxlen=self.HELD)

    def set(self, value):
        environ = os.environ
        # os.environ's own store, set directly so that no setenv() is called as well.
        mapping = getattr(environ, "_data", None)
        if _PUTENV is None or mapping is None or "\0" in value:
            environ[TRACE_VARIABLE] = value  # (which refuses a NUL, as it always has)
            return
        encoded = environ.encodevalue(value)
        # A bytes object's storage ends with a NUL and never moves: a C string as it is.
        entry = self._KEY + b"=" + encoded
        if _PUTENV(entry) != 0:
            environ[TRACE_VARIABLE] = value
            return
        self._held.append(entry)
        mapping[self._KEY] = encoded

    def clear(self):
        os.environ.pop(TRACE_VARIABLE, None)


class FaultError(Exception):
    """An error of the runtime itself, reported with an explicit Lambda error type."""

    def __init__(self, error_type, message):
        super().__init__(message)
        self.error_type = error_type
        self.message = message


class RuntimeClient:
    """Talks to the Runtime API over one keep-alive connection.

    A plain socket with one write per request: http.client's header parsing (the email
    package) cost more CPU than the rest of a no-op invocation, and at 128 MB a function
    only gets a fraction of a CPU.
    """

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        self._address = (host, int(port))
        self._host = address.encode("latin-1")
        self._socket = None
        self._buffer = b""
        # A response POST not yet sent: it goes out with the next GET /next, in one write.
        self._pending = b""

    def _connect(self):
        # Not socket.create_connection: its getaddrinfo call cost a freshly forked runtime
        # ~2.5 ms (name-service set-up); connect() takes a numeric address as it is.
        connection = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            connection.connect(self._address)
        except OSError:
            connection.close()
            raise
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket = connection
        self._buffer = b""

    def _close(self):
        if self._socket is not None:
            self._socket.close()
        self._socket = None

    def _head(self, method, path, headers, length=None):
        lines = [b"%s %s HTTP/1.1" % (method, path.encode("latin-1")), b"Host: " + self._host]
        for name, value in headers.items():
            lines.append(("%s: %s" % (name, value)).encode("latin-1", "replace"))
        if length is not None:
            lines.append(b"Content-Length: %d" % length)
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def _request(self, method, path, body=b"", headers=None):
        request = self._head(method, path, headers or {}, len(body)) + body
        for attempt in (1, 2):
            try:
                if self._socket is None:
                    self._connect()
                self._socket.sendall(request)
                return self._read_response()
            except OSError:
                self._close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _read_response(self):
        buffer = self._buffer
        while b"\r\n\r\n" not in buffer:
            data = self._socket.recv(65536)
            if not data:
                raise ConnectionError("the Runtime API closed the connection")
            buffer += data
        head, _, rest = buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        while len(rest) < length:
            data = self._socket.recv(max(65536, length - len(rest)))
            if not data:
                raise ConnectionError("the Runtime API closed the connection")
            rest += data
        self._buffer = rest[length:]
        return status, headers, rest[:length]

    def next(self):
        """The next event. A response held by `respond` is pipelined ahead of the request,
        so answering one event and asking for the next costs one round trip, not two."""
        pending, self._pending = self._pending, b""
        request = self._head(b"GET", RUNTIME_PATH + "/invocation/next", {})
        for attempt in (1, 2):
            try:
                if self._socket is None:
                    self._connect()
                self._socket.sendall(pending + request)
                if pending:
                    self._read_response()
                status, headers, body = self._read_response()
                break
            except OSError:
                self._close()
                if attempt == 2:
                    raise
        if status != 200:
            sys.exit(1)
        return headers, body

    def respond(self, request_id, body):
        """Answer an event; the POST is sent with the next GET /next (see `next`)."""
        path = "%s/invocation/%s/response" % (RUNTIME_PATH, request_id)
        self._pending = self._head(b"POST", path, {"Content-Type": "application/json"}, len(body))
        self._pending += body

    def fail(self, path, error):
        headers = {HEADER_ERROR_TYPE: error["errorType"], "Content-Type": "application/json"}
        self._request(b"POST", RUNTIME_PATH + path, to_json(error), headers)

    def stream(self, request_id, first, rest, on_error):
        """POST a streamed response chunk by chunk (HTTP chunked encoding) as it is produced.

        An exception from `rest` ends the stream; `on_error(exception)` builds the error
        payload, which travels in the trailers, as AWS's runtimes send it.
        """
        if self._socket is None:
            self._connect()
        connection = self._socket
        headers = {
            "Content-Type": "application/octet-stream",
            HEADER_RESPONSE_MODE: "streaming",
            "Transfer-Encoding": "chunked",
            "Trailer": "%s, %s" % (HEADER_ERROR_TYPE, HEADER_ERROR_BODY),
        }
        path = "%s/invocation/%s/response" % (RUNTIME_PATH, request_id)
        opening = self._head(b"POST", path, headers)
        if first:
            opening += b"%X\r\n%s\r\n" % (len(first), first)
        connection.sendall(opening)
        trailers = b""
        try:
            for item in rest:
                chunk = to_chunk(item)
                if chunk:
                    connection.sendall(b"%X\r\n%s\r\n" % (len(chunk), chunk))
        except Exception as error:
            payload = on_error(error)
            trailers = (
                "%s: %s\r\n%s: %s\r\n"
                % (
                    HEADER_ERROR_TYPE,
                    payload["errorType"],
                    HEADER_ERROR_BODY,
                    base64.b64encode(to_json(payload)).decode(),
                )
            ).encode("latin-1", "replace")
        connection.sendall(b"0\r\n" + trailers + b"\r\n")
        self._read_response()


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, identity_id=None, pool_id=None):
        self.cognito_identity_id = identity_id
        self.cognito_identity_pool_id = pool_id


class Client:
    __slots__ = (
        "app_package_name",
        "app_title",
        "app_version_code",
        "app_version_name",
        "installation_id",
    )

    def __init__(self, values):
        self.installation_id = values.get("installation_id")
        self.app_title = values.get("app_title")
        self.app_version_name = values.get("app_version_name")
        self.app_version_code = values.get("app_version_code")
        self.app_package_name = values.get("app_package_name")


class ClientContext:
    __slots__ = ("client", "custom", "env")

    def __init__(self, values):
        client = values.get("client")
        self.client = Client(client) if client else None
        self.custom = values.get("custom")
        self.env = values.get("env")


class LambdaContext:
    """The context object AWS passes as the handler's second argument."""

    def __init__(self, request_id, deadline_ms, function_arn, client_context, identity, tenant):
        self.aws_request_id = request_id
        self.invoked_function_arn = function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.client_context = ClientContext(client_context) if client_context else None
        self.identity = CognitoIdentity(
            (identity or {}).get("cognitoIdentityId"), (identity or {}).get("cognitoIdentityPoolId")
        )
        self.tenant_id = tenant
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(int(self._deadline_ms - time.time() * 1000), 0)

    def log(self, message):
        sys.stdout.write(str(message))
        sys.stdout.flush()

    def __repr__(self):
        return (
            "LambdaContext([aws_request_id=%s,log_group_name=%s,log_stream_name=%s,"
            "function_name=%s,memory_limit_in_mb=%s,function_version=%s,invoked_function_arn=%s,"
            "client_context=%s,identity=%s,tenant_id=%s])"
            % (
                self.aws_request_id,
                self.log_group_name,
                self.log_stream_name,
                self.function_name,
                self.memory_limit_in_mb,
                self.function_version,
                self.invoked_function_arn,
                self.client_context,
                self.identity,
                self.tenant_id,
            )
        )


def _default(value):
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError("Object of type %s is not JSON serializable" % type(value).__name__)


def to_json(value):
    return json.dumps(value, default=_default, separators=(",", ":")).encode()


def to_chunk(item):
    """The bytes one streamed item stands for."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, str):
        return item.encode("utf-8")
    return to_json(item)


def is_stream(result):
    """A handler streams when it returns an iterator (a generator, most often)."""
    # The plain types first: the abstract class's check costs more, on every invocation.
    return not isinstance(result, (dict, list, str, bytes, bytearray, tuple)) and isinstance(
        result, collections.abc.Iterator
    )


def error_payload(error, error_type=None):
    # The user sees their own frames only, as with AWS's runtime.
    frames = [
        frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename != __file__
    ]
    return {
        "errorMessage": str(error),
        "errorType": error_type or type(error).__name__,
        "requestId": "",
        "stackTrace": traceback.format_list(frames),
    }


def load_handler(spec):
    """Resolve `path/module.function` as AWS does, or raise a FaultError saying what is wrong."""
    try:
        module_path, function_name = spec.rsplit(".", 1)
    except ValueError:
        raise FaultError(
            "Runtime.MalformedHandlerName",
            "Bad handler '%s': not enough values to unpack (expected 2, got 1)" % spec,
        ) from None
    module_name = module_path.replace("/", ".")
    if module_name.split(".")[0] in BUILTIN_MODULES:
        raise FaultError(
            "Runtime.BuiltInModuleConflict",
            "Cannot use built-in module %s as a handler module" % module_name,
        )
    try:
        module = importlib.import_module(module_name)
    except SyntaxError as error:
        raise FaultError(
            "Runtime.UserCodeSyntaxError",
            "Syntax error in module '%s': %s" % (module_name, error),
        ) from None
    except ImportError as error:
        raise FaultError(
            "Runtime.ImportModuleError",
            "Unable to import module '%s': %s" % (module_name, error),
        ) from None
    handler = getattr(module, function_name, None)
    if handler is None:
        raise FaultError(
            "Runtime.HandlerNotFound",
            "Handler '%s' missing on module '%s'" % (function_name, module_name),
        )
    return handler


class RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record):
        record.aws_request_id = RequestIdFilter.request_id
        return True


class LambdaFormatter(logging.Formatter):
    converter = time.gmtime
    default_msec_format = None

    def __init__(self):
        super().__init__(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
            "%Y-%m-%dT%H:%M:%S",
        )


# LogRecord attributes that are not extra fields a user passed with `extra=`.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "aws_request_id",
}


class JsonFormatter(logging.Formatter):
    """The records AWS's Python runtime writes with LogFormat=JSON: timestamp, level,
    message, logger, requestId, the exception fields when there is one, and any `extra=`."""

    def format(self, record):
        level = min(50, max(0, record.levelno)) // 10 * 10
        entry = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + ".%03dZ" % record.msecs,
            "level": logging.getLevelName(level),
            "message": record.getMessage(),
            "logger": record.name,
            "requestId": getattr(record, "aws_request_id", None) or None,
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["errorType"] = record.exc_info[0].__name__
            entry["errorMessage"] = str(record.exc_info[1])
            entry["stackTrace"] = traceback.format_tb(record.exc_info[2])
            entry["location"] = "%s:%s:%s" % (record.pathname, record.funcName, record.lineno)
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in entry:
                entry[key] = value
        return json.dumps({k: v for k, v in entry.items() if v is not None}, default=str)


def json_logs():
    return os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON"


def log_level():
    """The root logger's level: AWS_LAMBDA_LOG_LEVEL (TRACE means DEBUG to Python), else
    INFO for JSON logs (Lambda's default ApplicationLogLevel) and WARNING for text."""
    name = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    name = {"TRACE": "DEBUG", "WARN": "WARNING", "FATAL": "CRITICAL"}.get(name, name)
    if name in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        return getattr(logging, name)
    return logging.INFO if json_logs() else logging.WARNING


def configure_logging():
    handler = logging.StreamHandler(sys.stdout)
    if json_logs():
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(LambdaFormatter())
        handler.terminator = ""
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(log_level())


def log_error(payload):
    if json_logs():
        # The record AWS's runtime writes for an unhandled error.
        message = json.dumps(
            {
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
                "level": "ERROR",
                "errorMessage": payload["errorMessage"],
                "errorType": payload["errorType"],
                "requestId": payload.get("requestId") or RequestIdFilter.request_id,
                "stackTrace": payload.get("stackTrace", []),
            }
        )
    else:
        lines = ["[ERROR] %s: %s" % (payload["errorType"], payload["errorMessage"])]
        if payload.get("stackTrace"):
            lines.append("Traceback (most recent call last):")
            lines.extend(frame.rstrip("\n") for frame in payload["stackTrace"])
        message = "\n".join(lines)
    sys.stdout.write(message.replace("\n", "\r") + "\n")
    sys.stdout.flush()


def prepare_path(task_root):
    for entry in (task_root, "/opt/python"):
        if entry and entry not in sys.path:
            sys.path.insert(0 if entry == task_root else 1, entry)
    opt = os.environ.get("LAMINA_OPT_DIR")
    if opt:
        version = "python%d.%d" % sys.version_info[:2]
        for entry in (
            os.path.join(opt, "python"),
            os.path.join(opt, "python", "lib", version, "site-packages"),
        ):
            if os.path.isdir(entry) and entry not in sys.path:
                sys.path.insert(1, entry)


def streamed_error(request_id):
    def describe(error):
        payload = error_payload(error)
        payload["requestId"] = request_id
        log_error(payload)
        return payload

    return describe


def serve(client, handler):
    trace_variable = TraceVariable()
    while True:
        headers, body = client.next()
        request_id = headers.get(HEADER_REQUEST_ID, "")
        RequestIdFilter.request_id = request_id
        trace_id = headers.get(HEADER_TRACE_ID)
        if trace_id:
            trace_variable.set(trace_id)
        else:
            trace_variable.clear()
        try:
            client_context = headers.get(HEADER_CLIENT_CONTEXT)
            client_context = json.loads(client_context) if client_context else None
            identity = headers.get(HEADER_COGNITO_IDENTITY)
            identity = json.loads(identity) if identity else None
            event = json.loads(body) if body else None
        except ValueError as error:
            payload = error_payload(error, "Runtime.UnmarshalError")
            payload["errorMessage"] = "Unable to unmarshal input: %s" % error
            payload["stackTrace"] = []
            log_error(payload)
            client.fail("/invocation/%s/error" % request_id, payload)
            continue
        context = LambdaContext(
            request_id,
            int(headers.get(HEADER_DEADLINE) or 0),
            headers.get(HEADER_FUNCTION_ARN),
            client_context,
            identity,
            headers.get(HEADER_TENANT_ID),
        )
        try:
            result = handler(event, context)
            streaming = is_stream(result)
            if streaming:
                # The first item is produced before the response begins, so a handler that
                # fails straight away reports an ordinary function error.
                first = b""
                for item in result:
                    first = to_chunk(item)
                    if first:
                        break
        except Exception as error:
            payload = error_payload(error)
            payload["requestId"] = request_id
            log_error(payload)
            client.fail("/invocation/%s/error" % request_id, payload)
            continue
        if streaming:
            client.stream(request_id, first, result, streamed_error(request_id))
            continue
        try:
            response = to_json(result)
        except (TypeError, ValueError) as error:
            payload = {
                "errorMessage": "Unable to marshal response: %s" % error,
                "errorType": "Runtime.MarshalError",
                "requestId": request_id,
                "stackTrace": [],
            }
            log_error(payload)
            client.fail("/invocation/%s/error" % request_id, payload)
            continue
        client.respond(request_id, response)


def main():
    # Unbuffered output keeps log lines in order with the platform's START/END lines.
    sys.stdout = os.fdopen(sys.stdout.fileno(), "w", buffering=1, closefd=False)
    client = RuntimeClient(os.environ["AWS_LAMBDA_RUNTIME_API"])
    task_root = os.environ.get("LAMBDA_TASK_ROOT", os.getcwd())
    prepare_path(task_root)
    configure_logging()
    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except FaultError as fault:
        payload = {
            "errorMessage": fault.message,
            "errorType": fault.error_type,
            "requestId": "",
            "stackTrace": [],
        }
        log_error(payload)
        client.fail("/init/error", payload)
        sys.exit(1)
    except Exception as error:
        payload = error_payload(error)
        log_error(payload)
        client.fail("/init/error", payload)
        sys.exit(1)
    serve(client, handler)


if __name__ == "__main__":
    main()
