"""Wire literals: written once here, referenced everywhere else."""

from __future__ import annotations

LATEST = "$LATEST"
DEFAULT_ACCOUNT_ID = "000000000000"
DEFAULT_REGION = "us-east-1"

# Standard (non-Managed-Instances) Lambda limits; botocore's model allows wider ranges.
MEMORY_MAX_MB = 10240
TIMEOUT_MAX_S = 900
EPHEMERAL_MAX_MB = 10240
ENV_VARS_MAX_BYTES = 4096
MAX_LAYERS = 5
ZIPPED_CODE_MAX_BYTES = 50 * 1024 * 1024
UNZIPPED_CODE_MAX_BYTES = 250 * 1024 * 1024
CODE_STORAGE_MAX_BYTES = 75 * 1024**3
POLICY_MAX_BYTES = 20 * 1024
ACCOUNT_CONCURRENCY_DEFAULT = 1000
UNRESERVED_CONCURRENCY_MIN = 100
LIST_PAGE_MAX = 50

# A request body may carry a 50 MB zip in base64 plus the rest of the JSON document.
MAX_REQUEST_BODY_BYTES = 70 * 1024 * 1024
# AWS's own limits on some operations' request bodies, named in its refusal
# ("Request must be smaller than 70167211 bytes for the CreateFunction operation").
OPERATION_REQUEST_MAX_BYTES = {"CreateFunction": 70167211}

HEADER_REQUEST_ID = "x-amzn-RequestId"
HEADER_ERROR_TYPE = "x-amzn-ErrorType"
HEADER_TRACE_ID = "X-Amzn-Trace-Id"
# Names the operation in the AWS JSON protocol: `<TargetPrefix>.<Operation>`.
HEADER_TARGET = "X-Amz-Target"

RESERVED_ENV_VARS = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)

# Runtimes Lamina accepts for new functions; the rest of the model's enum is deprecated.
SUPPORTED_RUNTIMES = (
    "nodejs18.x",
    "nodejs20.x",
    "nodejs22.x",
    "python3.9",
    "python3.10",
    "python3.11",
    "python3.12",
    "python3.13",
    "provided",
    "provided.al2",
    "provided.al2023",
)
# The runtimes AWS lists when it refuses an unknown runtime, in the order it prints them
# (its own set's order, recorded on AWS): "Value python2.1 at 'runtime' failed to satisfy
# constraint: Member must satisfy enum value set: [...] or be a valid ARN".
AWS_CREATE_RUNTIMES = (
    "nodejs20.x",
    "python3.14",
    "provided.al2023",
    "python3.12",
    "python3.13",
    "nodejs24.x",
    "nodejs22.x",
    "java17",
    "nodejs16.x",
    "java25",
    "dotnet8",
    "python3.10",
    "java11",
    "python3.11",
    "dotnet6",
    "java21",
    "nodejs18.x",
    "provided.al2",
    "ruby3.3",
    "ruby3.4",
    "java8.al2",
    "ruby3.2",
    "python3.8",
    "python3.9",
)
# The runtimes AWS lists when ListLayers/ListLayerVersions get an unknown CompatibleRuntime,
# in its printed order (recorded on AWS; it keeps names no model has, such as "nasa").
AWS_LAYER_FILTER_RUNTIMES = (
    "ruby3.5",
    "ruby2.6",
    "dotnetcore1.0",
    "python3.7",
    "nodejs8.10",
    "nasa",
    "ruby2.7",
    "python2.7-greengrass",
    "dotnetcore2.0",
    "python3.8",
    "java21",
    "dotnet6",
    "dotnetcore2.1",
    "python3.9",
    "java11",
    "nodejs6.10",
    "provided",
    "dotnetcore3.1",
    "dotnet8",
    "java25",
    "java17",
    "nodejs",
    "nodejs4.3",
    "java8.al2",
    "go1.x",
    "dotnet10",
    "nodejs20.x",
    "go1.9",
    "byol",
    "nodejs10.x",
    "provided.al2023",
    "nodejs22.x",
    "python3.10",
    "java8",
    "nodejs12.x",
    "python3.11",
    "nodejs24.x",
    "nodejs8.x",
    "python3.12",
    "nodejs14.x",
    "nodejs8.9",
    "nodejs26.x",
    "python3.13",
    "python3.14",
    "nodejs16.x",
    "python3.15",
    "provided.al2",
    "nodejs4.3-edge",
    "nodejs18.x",
    "ruby3.2",
    "python3.4",
    "ruby3.3",
    "ruby3.4",
    "ruby2.5",
    "python3.6",
    "python2.7",
)
# Runtimes AWS still lists but Lamina cannot run (no interpreter family for them yet).
ACCEPTED_FOREIGN_RUNTIMES = (
    "nodejs24.x",
    "python3.14",
    "java8.al2",
    "java11",
    "java17",
    "java21",
    "java25",
    "dotnet8",
    "dotnet10",
    "ruby3.2",
    "ruby3.3",
    "ruby3.4",
)

# The Lambda Runtime API (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html).
RUNTIME_API_PREFIX = "/2018-06-01/runtime"
RUNTIME_HEADER_REQUEST_ID = "Lambda-Runtime-Aws-Request-Id"
RUNTIME_HEADER_DEADLINE = "Lambda-Runtime-Deadline-Ms"
RUNTIME_HEADER_FUNCTION_ARN = "Lambda-Runtime-Invoked-Function-Arn"
RUNTIME_HEADER_TRACE_ID = "Lambda-Runtime-Trace-Id"
RUNTIME_HEADER_CLIENT_CONTEXT = "Lambda-Runtime-Client-Context"
RUNTIME_HEADER_COGNITO_IDENTITY = "Lambda-Runtime-Cognito-Identity"
RUNTIME_HEADER_ERROR_TYPE = "Lambda-Runtime-Function-Error-Type"
RUNTIME_HEADER_RESPONSE_MODE = "Lambda-Runtime-Function-Response-Mode"
# Trailer of a streamed response that failed after it began (base64 of the error JSON).
RUNTIME_HEADER_ERROR_BODY = "Lambda-Runtime-Function-Error-Body"

# Error types of failures Lamina reports for a function (a failed invocation's `errorType`).
# The Python runtime's own (Runtime.ImportModuleError, ...) are written in its bootstrap,
# which runs inside functions and cannot import Lamina.
RUNTIME_EXIT_ERROR = "Runtime.ExitError"
RUNTIME_OUT_OF_MEMORY = "Runtime.OutOfMemory"
RUNTIME_INVALID_RUNTIME = "Runtime.InvalidRuntime"
RUNTIME_INVALID_ENTRYPOINT = "Runtime.InvalidEntrypoint"
SANDBOX_TIMEDOUT = "Sandbox.Timedout"
FUNCTION_RESPONSE_SIZE_TOO_LARGE = "Function.ResponseSizeTooLarge"
# X-Amz-Function-Error / `functionError` of a failed invocation; also the error type
# reported when a failure has none of its own.
FUNCTION_ERROR_UNHANDLED = "Unhandled"

# Payload limits (the Runtime Interface Emulator's constant: 6 MiB plus 100 bytes).
SYNC_PAYLOAD_MAX_BYTES = 6 * 1024 * 1024 + 100
ASYNC_PAYLOAD_MAX_BYTES = 1024 * 1024
STREAM_RESPONSE_MAX_BYTES = 200 * 1024 * 1024
INIT_TIMEOUT_S = 10.0
LOG_TAIL_BYTES = 4096

# Function URLs are also served by path, for hosts where *.localhost does not resolve.
URL_PATH_PREFIX = "/lambda-url/"
