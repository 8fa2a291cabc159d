"""Lambda's rules for a function configuration, beyond what the model's shapes check."""

from __future__ import annotations

import re

import orjson

from lamina.constants import (
    ACCEPTED_FOREIGN_RUNTIMES,
    ENV_VARS_MAX_BYTES,
    RESERVED_ENV_VARS,
    SUPPORTED_RUNTIMES,
)
from lamina.errors import InvalidParameterValue
from lamina.model.functions import FunctionConfig

_ENV_KEY = re.compile(r"[a-zA-Z]([a-zA-Z0-9_])+")
_DLQ_TARGET = re.compile(r"arn:aws[a-zA-Z-]*:(sqs|sns):[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]+")
_SNAPSTART_RUNTIMES = (
    "python3.12",
    "python3.13",
    "java11",
    "java17",
    "java21",
    "java25",
    "dotnet8",
)


# The runtime AWS recommends instead of a retired one: the newest of its family.
_RECOMMENDED_RUNTIMES = {
    "nodejs": "nodejs24.x",
    "python": "python3.14",
    "java": "java25",
    "ruby": "ruby3.4",
    "dotnet": "dotnet10",
    "dotnetcore": "dotnet10",
    "go": "provided.al2023",
    "provided": "provided.al2023",
}


def check_runtime(runtime: str | None) -> None:
    """Refuse a retired runtime as AWS does. (An unknown one is refused by the API's
    validation, which knows the model's runtimes.)"""
    if runtime is None or runtime in SUPPORTED_RUNTIMES or runtime in ACCEPTED_FOREIGN_RUNTIMES:
        return
    family = re.match(r"[a-z]*", runtime)
    recommended = _RECOMMENDED_RUNTIMES.get(family.group() if family else "")
    advice = (
        f"We recommend you use the new runtime ({recommended}) while creating or updating "
        "functions."
        if recommended
        else "We recommend you use a supported runtime while creating or updating functions."
    )
    raise InvalidParameterValue(
        f"The runtime parameter of {runtime} is no longer supported for creating or updating "
        f"AWS Lambda functions. {advice}"
    )


def check_environment(variables: dict[str, str] | None) -> None:
    if not variables:
        return
    bad_keys = [key for key in variables if not _ENV_KEY.fullmatch(key)]
    if bad_keys:
        raise InvalidParameterValue(
            "Environment variable names must start with a letter and contain only letters, "
            f"digits and underscores, at least 2 characters: {', '.join(sorted(bad_keys))}"
        )
    reserved = sorted(key for key in variables if key in RESERVED_ENV_VARS)
    if reserved:
        raise InvalidParameterValue(
            "Lambda was unable to configure your environment variables because the environment "
            "variables you have provided contains reserved keys that are currently not "
            f"supported for modification. Reserved keys used in this request: {', '.join(reserved)}"
        )
    measured = orjson.dumps(variables)
    if len(measured) > ENV_VARS_MAX_BYTES:
        raise InvalidParameterValue(
            "Lambda was unable to configure your environment variables because the environment "
            f"variables you have provided exceeded the 4KB limit. String measured: "
            f"{measured.decode()}"
        )


def check_config(config: FunctionConfig) -> None:
    """Rules that span several fields of a configuration."""
    if config.package_type == "Zip" and (not config.runtime or not config.handler):
        raise InvalidParameterValue(
            "Runtime and Handler are mandatory parameters for functions created with "
            "deployment packages."
        )
    check_runtime(config.runtime)
    check_environment(config.environment)
    if config.dead_letter_target and not _DLQ_TARGET.fullmatch(config.dead_letter_target):
        raise InvalidParameterValue(
            "The provided target arn is invalid: a dead-letter queue must be an SQS queue or "
            f"SNS topic ARN, got {config.dead_letter_target}"
        )
    logging = config.logging
    if logging.log_format != "JSON" and (logging.application_log_level or logging.system_log_level):
        raise InvalidParameterValue(
            "ApplicationLogLevel and SystemLogLevel can only be set when LogFormat is JSON."
        )
    if config.snap_start == "PublishedVersions" and config.runtime not in _SNAPSTART_RUNTIMES:
        raise InvalidParameterValue(
            f"{config.runtime} is not supported for SnapStart enabled functions."
        )
