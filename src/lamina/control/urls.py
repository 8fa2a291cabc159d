"""Function URL configs: a dedicated HTTP endpoint for $LATEST or for one alias."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Self

from lamina.arns import FunctionRef
from lamina.constants import LATEST
from lamina.control.context import Domain
from lamina.control.functions import FunctionService
from lamina.control.paging import decode_marker, page_size, take_page
from lamina.errors import InvalidParameterValue, ResourceConflict, ResourceNotFound
from lamina.model.functions import Document

KIND = "url"
URL_ID_LENGTH = 32
_URL_ID_ALPHABET = string.ascii_lowercase + string.digits
_NOT_FOUND = "The resource you requested does not exist."
# How AWS answers a missing function or alias on Create, Update and List (Get and Delete
# answer _NOT_FOUND for those too).
_NO_FUNCTION = "Function does not exist"


def url_timestamp(moment: datetime | None = None) -> str:
    """The URL config time format, e.g. `2021-10-31T18:00:00.000000Z`."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_url_id() -> str:
    return "".join(secrets.choice(_URL_ID_ALPHABET) for _ in range(URL_ID_LENGTH))


@dataclass(frozen=True)
class Cors(Document):
    """Cross-origin settings the URL endpoint applies to every response."""

    allow_credentials: bool | None = None
    allow_headers: tuple[str, ...] | None = None
    allow_methods: tuple[str, ...] | None = None
    allow_origins: tuple[str, ...] | None = None
    expose_headers: tuple[str, ...] | None = None
    max_age: int | None = None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Self:
        doc = dict(doc)
        for item in fields(cls):
            if isinstance(doc.get(item.name), list):
                doc[item.name] = tuple(doc[item.name])
        return super().from_doc(doc)


@dataclass(frozen=True)
class FunctionUrlConfig(Document):
    """One function URL: its id (the URL's first label), auth, CORS and invoke mode."""

    function_name: str
    qualifier: str  # "$LATEST" or an alias name
    url_id: str
    auth_type: str
    cors: Cors | None = None
    invoke_mode: str = "BUFFERED"
    creation_time: str = field(default_factory=url_timestamp)
    last_modified_time: str = field(default_factory=url_timestamp)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Self:
        doc = dict(doc)
        if doc.get("cors") is not None:
            doc["cors"] = Cors.from_doc(doc["cors"])
        return super().from_doc(doc)

    @property
    def alias(self) -> str | None:
        return None if self.qualifier == LATEST else self.qualifier


@dataclass(frozen=True)
class UrlSettings:
    """Fields a Create or Update request carries; None means "not given"."""

    auth_type: str | None = None
    cors: Cors | None = None
    invoke_mode: str | None = None


class UrlConfigService:
    """Create/Get/Update/Delete/List function URL configs, and lookup by URL id."""

    def __init__(self, domain: Domain, functions: FunctionService) -> None:
        self._functions = functions
        self._store = domain.stores.functions
        self._account = domain.account

    def _target(
        self, ref: FunctionRef, qualifier: str | None, missing: str = _NO_FUNCTION
    ) -> tuple[str, str]:
        """(function name, child key) after checking the function and alias exist."""
        try:
            resolved = self._functions.resolve(ref, qualifier)
        except ResourceNotFound:
            raise ResourceNotFound(missing) from None
        key = resolved.qualifier or LATEST
        if key != LATEST and resolved.alias is None:
            raise InvalidParameterValue(
                f"Function URLs attach to $LATEST or to an alias, not to version {key}: "
                "create an alias for the version and use its name as the Qualifier"
            )
        return resolved.record.name, key

    def _load(self, name: str, key: str) -> FunctionUrlConfig | None:
        doc = self._store.get_child(name, KIND, key)
        return FunctionUrlConfig.from_doc(doc) if doc is not None else None

    def function_arn(self, config: FunctionUrlConfig) -> str:
        return self._account.function_arn(config.function_name, config.alias)

    def create(
        self, ref: FunctionRef, qualifier: str | None, settings: UrlSettings
    ) -> FunctionUrlConfig:
        with self._store.transaction():
            name, key = self._target(ref, qualifier)
            if self._store.get_child(name, KIND, key) is not None:
                arn = self._account.function_arn(name, None if key == LATEST else key)
                raise ResourceConflict(
                    f"Failed to create function url config for [functionArn = {arn}]. "
                    "Error message:  FunctionUrlConfig exists for this Lambda function"
                )
            assert settings.auth_type is not None  # required by the model
            now = url_timestamp()
            config = FunctionUrlConfig(
                function_name=name,
                qualifier=key,
                url_id=new_url_id(),
                auth_type=settings.auth_type,
                cors=settings.cors,
                invoke_mode=settings.invoke_mode or "BUFFERED",
                creation_time=now,
                last_modified_time=now,
            )
            self._store.put_child(name, KIND, key, config.to_doc())
            return config

    def get(
        self, ref: FunctionRef, qualifier: str | None, missing: str = _NOT_FOUND
    ) -> FunctionUrlConfig:
        name, key = self._target(ref, qualifier, missing)
        config = self._load(name, key)
        if config is None:
            raise ResourceNotFound(_NOT_FOUND)
        return config

    def update(
        self, ref: FunctionRef, qualifier: str | None, settings: UrlSettings
    ) -> FunctionUrlConfig:
        """Merge the given fields; a given Cors replaces the stored one as a whole."""
        with self._store.transaction():
            current = self.get(ref, qualifier, missing=_NO_FUNCTION)
            config = replace(
                current,
                auth_type=settings.auth_type or current.auth_type,
                cors=settings.cors if settings.cors is not None else current.cors,
                invoke_mode=settings.invoke_mode or current.invoke_mode,
                last_modified_time=url_timestamp(),
            )
            self._store.put_child(config.function_name, KIND, config.qualifier, config.to_doc())
            return config

    def delete(self, ref: FunctionRef, qualifier: str | None) -> None:
        with self._store.transaction():
            config = self.get(ref, qualifier)
            self._store.delete_child(config.function_name, KIND, config.qualifier)

    def list_configs(
        self, ref: FunctionRef, marker: str | None, max_items: int | None
    ) -> tuple[list[FunctionUrlConfig], str | None]:
        try:
            record = self._functions.unqualified(ref, "ListFunctionUrlConfigs")
        except ResourceNotFound:
            raise ResourceNotFound(_NO_FUNCTION) from None
        after = decode_marker(marker)
        configs = [
            FunctionUrlConfig.from_doc(doc)
            for key, doc in self._store.list_children(record.name, KIND)
            if after is None or key > str(after)
        ]
        return take_page(configs, page_size(max_items), lambda config: config.qualifier)
