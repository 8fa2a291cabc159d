"""The AWS `query` protocol: `POST /` with a form body (`Action=...&Version=...`), XML back.

Older SDKs and tools speak it to services that have since moved to JSON or CBOR (CloudWatch
among them). Members are flattened into dotted form keys (`Dimensions.member.1.Name`,
`ExtendedStatistics.entry.1.key`), as botocore's query serializer writes them; results are
XML wrapped in `<Op>Response><Op>Result>`.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl
from xml.etree import ElementTree

from botocore.model import OperationModel, Shape, StructureShape
from starlette.requests import Request
from starlette.responses import Response

from lamina.api.pipeline import ModelService, query_error_code
from lamina.errors import InvalidRequestContent, LaminaError, UnknownOperation, ValidationError

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
_XML = "text/xml"


class QueryService(ModelService):
    """Serves a service model's operations over the query protocol."""

    def locate(self, request: Request, body: bytes) -> tuple[str, None]:
        action = _form(body).get("Action")
        if not action:
            raise UnknownOperation("The request has no Action parameter")
        return action, None

    def decode(
        self, operation: OperationModel, request: Request, body: bytes, located: None
    ) -> dict[str, Any]:
        shape = operation.input_shape
        if shape is None:
            return {}
        decoded: dict[str, Any] = _decode_structure(shape, _form(body), "")
        return decoded

    def encode(
        self, operation: OperationModel, result: dict[str, Any], request_id: str
    ) -> Response:
        namespace = self.model.metadata.get("xmlNamespace", "")
        root = ElementTree.Element(f"{operation.name}Response", xmlns=namespace)
        shape = operation.output_shape
        if shape is not None:
            wrapper = shape.serialization.get("resultWrapper", f"{operation.name}Result")
            root.append(_encode(shape, result, wrapper))
        metadata = ElementTree.SubElement(root, "ResponseMetadata")
        ElementTree.SubElement(metadata, "RequestId").text = request_id
        return Response(ElementTree.tostring(root, xml_declaration=False), media_type=_XML)

    def _error(self, error: LaminaError, request_id: str) -> Response:
        code, status, fault = query_error_code(error, self.model)
        namespace = self.model.metadata.get("xmlNamespace", "")
        root = ElementTree.Element("ErrorResponse", xmlns=namespace)
        element = ElementTree.SubElement(root, "Error")
        ElementTree.SubElement(element, "Type").text = fault
        ElementTree.SubElement(element, "Code").text = code
        ElementTree.SubElement(element, "Message").text = error.message
        ElementTree.SubElement(root, "RequestId").text = request_id
        return Response(
            ElementTree.tostring(root),
            status_code=status,
            headers=error.headers,
            media_type=_XML,
        )


# ---------------------------------------------------------------- decoding


def _form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _present(form: dict[str, str], key: str) -> bool:
    if key in form:
        return True
    prefix = key + "."
    return any(name.startswith(prefix) for name in form)


def _decode(shape: Shape, form: dict[str, str], key: str) -> Any:
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        return _decode_structure(shape, form, key)
    if kind == "list":
        if form.get(key) == "":
            return []  # how the protocol writes an empty list
        flattened = shape.serialization.get("flattened", False)
        item_name = shape.member.serialization.get("name", "member")
        base = key if flattened else f"{key}.{item_name}"
        items = []
        index = 1
        while _present(form, f"{base}.{index}"):
            items.append(_decode(shape.member, form, f"{base}.{index}"))
            index += 1
        return items
    if kind == "map":
        flattened = shape.serialization.get("flattened", False)
        base = key if flattened else f"{key}.entry"
        result = {}
        index = 1
        while _present(form, f"{base}.{index}"):
            entry_key = form.get(f"{base}.{index}.key", "")
            result[entry_key] = _decode(shape.value, form, f"{base}.{index}.value")
            index += 1
        return result
    return _scalar(shape, form.get(key, ""), key)


def _decode_structure(shape: StructureShape, form: dict[str, str], prefix: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, member in shape.members.items():
        wire = member.serialization.get("name", name)
        key = f"{prefix}.{wire}" if prefix else wire
        if _present(form, key):
            result[name] = _decode(member, form, key)
    return result


def _scalar(shape: Shape, text: str, key: str) -> Any:
    kind = shape.type_name
    try:
        if kind in {"integer", "long"}:
            return int(text)
        if kind in {"double", "float"}:
            return float(text)
        if kind == "timestamp":
            return _timestamp(text)
    except ValueError:
        raise ValidationError(
            f"1 validation error detected: Value '{text}' at '{key}' failed to satisfy "
            f"constraint: Member must be a valid {kind}"
        ) from None
    if kind == "boolean":
        return text.lower() == "true"
    if kind == "blob":
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error:
            raise InvalidRequestContent(f"{key} is not valid base64") from None
    return text


def _timestamp(text: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# ---------------------------------------------------------------- encoding


def _encode(shape: Shape, value: Any, name: str) -> ElementTree.Element:
    element = ElementTree.Element(name)
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        for member_name, member in shape.members.items():
            item = value.get(member_name)
            if item is not None:
                wire = member.serialization.get("name", member_name)
                element.append(_encode(member, item, wire))
    elif kind == "list":
        item_name = shape.member.serialization.get("name", "member")
        for item in value:
            element.append(_encode(shape.member, item, item_name))
    elif kind == "map":
        for key, item in value.items():
            entry = ElementTree.SubElement(element, "entry")
            ElementTree.SubElement(entry, "key").text = str(key)
            entry.append(_encode(shape.value, item, "value"))
    elif kind == "timestamp":
        moment = value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)
        element.text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    elif kind == "boolean":
        element.text = "true" if value else "false"
    elif kind == "blob":
        element.text = base64.b64encode(value).decode()
    elif kind in {"double", "float"}:
        element.text = repr(float(value))
    else:
        element.text = str(value)
    return element
