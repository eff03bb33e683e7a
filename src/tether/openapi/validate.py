"""``validate = true``: a JSON response checked against the OpenAPI document's schema for its operation.

The operation is found by the request's method and path (relative to ``base_url``'s path) among the
document's path templates; the response object by the exact status (``"404"``), else its range (``"4XX"``),
else ``default``; the schema by the response's media type among the JSON ones (``application/json``,
``*+json``), else the first JSON one. Anything the document does not describe is not checked: an unknown
path, a status with no response, a response without a JSON schema.

The document is read on the first check, once per process; the converted schemas and one compiled validator
per (operation, status, media type) are shared by every integration that names the same document.
"""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing.exceptions import Unresolvable

from tether import errors
from tether.errors import ConfigError, ConfigProblem
from tether.observe.redact import redact_url
from tether.openapi.dialect import convert_document
from tether.openapi.document import OpenAPIDocument, load_document
from tether.openapi.mismatch import describe
from tether.openapi.operations import Operation, OperationIndex, operations
from tether.openapi.refs import BUNDLE_HINT, Locator, escape, registry_for
from tether.policies.endpoints import relative_path

__all__ = ["HINT", "ResponseValidator", "response_validator"]

HINT = (
    "the API's response format changed (a new API version?) or the OpenAPI document is out of date: pin the "
    "API version (version, version_header) to the one the document describes, or update the document; "
    "validate = false turns the check off"
)


class _Schemas:
    """One document's schemas as JSON Schema 2020-12, its operations, and the validators compiled so far."""

    def __init__(self, document: OpenAPIDocument) -> None:
        self.document = document
        self.data = convert_document(document.data, openapi_30=document.is_30)
        self.registry = registry_for(document.uri, self.data)
        self.locator = Locator(document, self.registry)
        self.index = OperationIndex(operations(self.data, self.locator))
        # None caches "nothing to check" too, so undescribed responses cost one dict lookup after the first.
        self._validators: dict[tuple[str, str, str], tuple[Draft202012Validator, str] | None] = {}

    def validator(
        self, operation: Operation, status: int, content_type: str
    ) -> tuple[Draft202012Validator, str] | None:
        """The compiled validator for this response and the status key it came from, or ``None``."""
        key = (operation.location, str(status), content_type)
        try:
            return self._validators[key]
        except KeyError:
            pass
        found = self._compile(operation, status, content_type)
        self._validators[key] = found
        return found

    def _compile(self, operation: Operation, status: int, content_type: str) -> tuple[Draft202012Validator, str] | None:
        item, _ = self.locator.follow({"$ref": "#" + quote(operation.location, safe="/~")}, operation.location)
        responses, where = self.locator.follow(item.get("responses"), f"{operation.location}/responses")
        if not isinstance(responses, dict):
            return None
        status_key = _status_key(responses, status)
        if status_key is None:
            return None
        response, where = self.locator.follow(responses[status_key], f"{where}/{escape(status_key)}")
        content = response.get("content") if isinstance(response, dict) else None
        media = _media_type(content, content_type) if isinstance(content, dict) else None
        if media is None:
            return None
        location = f"{where}/content/{escape(media)}/schema"
        schema = {"$ref": f"{self.document.uri}#{quote(location, safe='/~')}"}
        return Draft202012Validator(schema, registry=self.registry), status_key


def _status_key(responses: dict[str, Any], status: int) -> str | None:
    exact = str(status)
    if exact in responses:
        return exact
    for key in responses:
        if key.upper() == f"{status // 100}XX":
            return key
    return "default" if "default" in responses else None


def _is_json(media: str) -> bool:
    media = media.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


def _media_type(content: dict[str, Any], content_type: str) -> str | None:
    candidates = [
        media for media, value in content.items() if _is_json(media) and isinstance(value, dict) and "schema" in value
    ]
    for media in candidates:
        if media.split(";", 1)[0].strip().lower() == content_type:
            return media
    return candidates[0] if candidates else None


_schemas: weakref.WeakKeyDictionary[OpenAPIDocument, _Schemas] = weakref.WeakKeyDictionary()
_schemas_lock = threading.Lock()


def _schemas_of(document: OpenAPIDocument) -> _Schemas:
    with _schemas_lock:
        schemas = _schemas.get(document)
        if schemas is None:
            schemas = _schemas[document] = _Schemas(document)
        return schemas


class ResponseValidator:
    """Checks parsed JSON bodies against one document, for an integration whose ``base_url`` has ``base_path``.

    Args:
        document: The OpenAPI document's path (absolute, or relative to the working directory).
        base_path: ``base_url``'s path without its trailing slash (``"/v1"``), which request paths are taken
            relative to before they are matched against the document's path templates.
    """

    def __init__(self, document: Path, base_path: str) -> None:
        self.document_path = document
        self.base_path = base_path
        self._schemas: _Schemas | None = None
        self._lock = threading.Lock()

    def _load(self) -> _Schemas:
        with self._lock:
            if self._schemas is None:
                self._schemas = _schemas_of(load_document(self.document_path))
            return self._schemas

    def check(self, response: httpx2.Response, body: Any) -> None:
        """Raise :class:`~tether.errors.SchemaMismatchError` when ``body`` (``response``'s parsed JSON) does
        not match the document's schema for the response.

        Raises:
            SchemaMismatchError: the first mismatch, by JSON path.
            ConfigError: the document cannot be read, or one of its ``$ref`` cannot be resolved.
        """
        schemas = self._schemas or self._load()
        request = response.request
        path = relative_path(request.url.raw_path.split(b"?", 1)[0].decode("ascii", "replace"), self.base_path)
        operation = schemas.index.find(request.method, path)
        if operation is None:
            return
        content_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        found = schemas.validator(operation, response.status_code, content_type)
        if found is None:
            return
        validator, status_key = found
        try:
            error = best_match(validator.iter_errors(body))
        except Unresolvable as exc:
            problem = f"a $ref under {operation.pattern} cannot be resolved ({exc.ref!r}); {BUNDLE_HINT}"
            raise ConfigError(str(schemas.document.path), [ConfigProblem("", problem)]) from None
        if error is None:
            return
        where, expected = describe(error)
        keyword = str(error.validator) if error.validator is not None else "false"
        extensions = response.extensions
        attempts: tuple[errors.Attempt, ...] = tuple(extensions.get("tether.attempts", ()))
        # Not chained to the ValidationError: its message and attributes hold the body's values.
        raise errors.SchemaMismatchError(
            path=where,
            keyword=keyword,
            request=request,
            summary=(
                f"response does not match the OpenAPI document at {where}: {expected} "
                f"(schema keyword {keyword!r}; {operation.pattern} → {status_key})"
            ),
            hint=HINT,
            integration=str(extensions.get("tether.integration", "?")),
            method=request.method,
            url=redact_url(request.url),
            status=response.status_code,
            request_id=attempts[-1].request_id if attempts else None,
            attempts=attempts,
            elapsed=float(extensions.get("tether.elapsed", 0.0)),
        ) from None


_validators: dict[tuple[Path, str], ResponseValidator] = {}
_validators_lock = threading.Lock()


def response_validator(document: Path, base_path: str) -> ResponseValidator:
    """The process's validator for ``document`` and ``base_path``; nothing is read until the first check."""
    key = (document, base_path)
    with _validators_lock:
        validator = _validators.get(key)
        if validator is None:
            validator = _validators[key] = ResponseValidator(document, base_path)
        return validator
