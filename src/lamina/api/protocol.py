"""rest-json (de)serialisation driven by botocore shapes.

Requests become a dict of the operation's input members; results (dicts keyed by output
member names) become status, headers and body exactly where the model puts them.
"""

from __future__ import annotations

import base64
import binascii
import math
from datetime import datetime
from typing import Any

import orjson
from botocore.model import OperationModel, Shape, StructureShape

from lamina.errors import InvalidRequestContent, ValidationError


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _scalar_from_text(shape: Shape, value: str, where: str) -> Any:
    kind = shape.type_name
    if kind in {"integer", "long"}:
        try:
            return int(value)
        except ValueError:
            raise ValidationError(
                f"1 validation error detected: Value '{value}' at '{where}' failed to "
                "satisfy constraint: Member must be a number"
            ) from None
    if kind == "boolean":
        return value.lower() == "true"
    if kind in {"double", "float"}:
        return float(value)
    return value


def from_json(shape: Shape, value: Any, where: str) -> Any:
    """Check JSON types against the shape and decode blobs."""
    if value is None:
        return None
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        if not isinstance(value, dict):
            raise _type_error(where, "an object")
        return {
            key: from_json(
                shape.members[key], item, f"{where}.{_camel(key)}" if where else _camel(key)
            )
            for key, item in value.items()
            if key in shape.members
        }
    if kind == "list":
        if not isinstance(value, list):
            raise _type_error(where, "an array")
        return [from_json(shape.member, item, where) for item in value]
    if kind == "map":
        if not isinstance(value, dict):
            raise _type_error(where, "an object")
        return {key: from_json(shape.value, item, where) for key, item in value.items()}
    if kind == "blob":
        if not isinstance(value, str):
            raise _type_error(where, "a base64 string")
        try:
            # strict_mode refuses stray characters as validate=True does, without its regex pass.
            return binascii.a2b_base64(value, strict_mode=True)
        except (binascii.Error, ValueError):
            raise InvalidRequestContent(
                f"Could not parse request body into json: {where} is not valid base64"
            ) from None
    if kind in {"integer", "long"}:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise _type_error(where, "an integer")
        return int(value)
    if kind in {"double", "float"}:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(where, "a number")
        return float(value)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _type_error(where, "a boolean")
        return value
    if kind == "string" and not isinstance(value, str):
        raise _type_error(where, "a string")
    return value


def _type_error(where: str, expected: str) -> InvalidRequestContent:
    return InvalidRequestContent(
        f"Could not parse request body into json: field '{where}' must be {expected}"
    )


def json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object, or the error AWS answers otherwise."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidRequestContent(f"Could not parse request body into json: {error}") from None
    if not isinstance(document, dict):
        raise InvalidRequestContent("Could not parse request body into json: not an object")
    return document


def parse_request(
    operation: OperationModel,
    path_params: dict[str, str],
    query: dict[str, list[str]],
    headers: dict[str, str],
    body: bytes,
) -> dict[str, Any]:
    shape = operation.input_shape
    if shape is None:
        return {}
    params: dict[str, Any] = {}
    payload_member = shape.serialization.get("payload")
    body_members: dict[str, Shape] = {}
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire_name = member.serialization.get("name", name)
        if location == "uri":
            if wire_name in path_params:
                params[name] = _scalar_from_text(member, path_params[wire_name], _camel(name))
        elif location == "querystring":
            values = query.get(wire_name)
            if values:
                if member.type_name == "list":
                    params[name] = values
                else:
                    params[name] = _scalar_from_text(member, values[0], _camel(name))
        elif location == "header":
            value = headers.get(wire_name.lower())
            if value is not None:
                params[name] = _scalar_from_text(member, value, _camel(name))
        elif name == payload_member:
            if member.type_name == "blob":
                params[name] = body
        else:
            body_members[name] = member
    if body_members and body.strip():
        document = json_object(body)
        for name, member in body_members.items():
            if name in document:
                params[name] = from_json(member, document[name], _camel(name))
    return params


def to_json(shape: Shape, value: Any) -> Any:
    if value is None:
        return None
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        return {
            key: to_json(shape.members[key], item)
            for key, item in value.items()
            if key in shape.members and item is not None
        }
    if kind == "list":
        return [to_json(shape.member, item) for item in value]
    if kind == "map":
        return {key: to_json(shape.value, item) for key, item in value.items()}
    if kind == "blob":
        return base64.b64encode(value).decode()
    if kind == "timestamp":
        if isinstance(value, datetime):
            value = value.timestamp()
        return value if not isinstance(value, float) or not math.isnan(value) else None
    return value


def serialize_response(
    operation: OperationModel, result: dict[str, Any] | None
) -> tuple[int, dict[str, str], bytes]:
    """Place each output member where the model says: status code, header, payload, body."""
    status = int(operation.http.get("responseCode", 200))
    headers: dict[str, str] = {}
    shape = operation.output_shape
    if shape is None or result is None:
        return status, headers, b""
    payload_member = shape.serialization.get("payload")
    document: dict[str, Any] = {}
    raw_body: bytes | None = None
    for name, value in result.items():
        member = shape.members.get(name)
        if member is None or value is None:
            continue
        location = member.serialization.get("location")
        if location == "statusCode":
            status = int(value)
        elif location == "header":
            headers[member.serialization.get("name", name)] = str(value)
        elif name == payload_member:
            raw_body = value if isinstance(value, bytes) else orjson.dumps(value)
        else:
            document[name] = to_json(member, value)
    if raw_body is not None:
        return status, headers, raw_body
    if status == 204 and not document:
        return status, headers, b""
    headers["Content-Type"] = "application/json"
    return status, headers, orjson.dumps(document)
