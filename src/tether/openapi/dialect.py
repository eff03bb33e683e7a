"""OpenAPI schemas as JSON Schema 2020-12, the dialect tether validates responses with.

OpenAPI 3.1 schemas are JSON Schema 2020-12 already. OpenAPI 3.0 schemas are an extended subset of an older
draft and differ where it matters to a validator:

- ``nullable: true`` allows ``null``: it becomes ``"null"`` in ``type`` (and ``None`` in ``enum``), or an
  ``anyOf`` with ``{"type": "null"}`` when the schema has no ``type`` (a ``$ref``, an ``allOf``).
- ``exclusiveMinimum: true`` (a flag on ``minimum``) becomes ``exclusiveMinimum: <minimum>``; likewise for
  the maximum.
- Keys next to a ``$ref`` are ignored in 3.0; they apply in 2020-12, so they are dropped (but a ``nullable``
  there is honoured, as tools that generate 3.0 documents mean it).

``nullable`` and the boolean ``exclusiveMinimum``/``exclusiveMaximum`` are converted in 3.1 documents too:
they mean nothing in 2020-12, yet many 3.1 documents (OpenAI's among them) still write ``nullable: true``,
and validating those literally would report every ``null`` the API sends as a mismatch.

Only schemas are converted, never examples or defaults that merely look like schemas.
"""

from __future__ import annotations

from typing import Any

__all__ = ["to_json_schema"]

# Keywords whose value is a schema, a list of schemas, or a mapping of names to schemas.
_ONE = frozenset(
    {"items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames"}
    | {"unevaluatedItems", "unevaluatedProperties", "additionalItems", "contentSchema"}
)
_MANY = ("allOf", "anyOf", "oneOf", "prefixItems")
_NAMED = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def to_json_schema(schema: Any, *, openapi_30: bool) -> Any:
    """``schema`` (an OpenAPI Schema Object) as JSON Schema 2020-12; the input is left as it was."""
    if not isinstance(schema, dict):
        return schema  # true/false schemas, or something malformed that validation will report
    nullable = schema.get("nullable") is True
    if "$ref" in schema and openapi_30:
        converted: dict[str, Any] = {"$ref": schema["$ref"]}
    else:
        converted = {}
        for key, value in schema.items():
            if key == "nullable":
                continue
            if key == "items" and isinstance(value, list):  # the tuple form of older drafts
                converted["prefixItems"] = [to_json_schema(item, openapi_30=openapi_30) for item in value]
            elif key in _ONE:
                converted[key] = to_json_schema(value, openapi_30=openapi_30)
            elif key in _MANY and isinstance(value, list):
                converted[key] = [to_json_schema(item, openapi_30=openapi_30) for item in value]
            elif key in _NAMED and isinstance(value, dict):
                converted[key] = {name: to_json_schema(sub, openapi_30=openapi_30) for name, sub in value.items()}
            else:
                converted[key] = value
        if isinstance(schema.get("items"), list) and "additionalItems" in converted:
            converted["items"] = converted.pop("additionalItems")  # what follows the tuple, in 2020-12 terms
        _exclusive_bounds(converted)
    return _allow_null(converted) if nullable else converted


def _exclusive_bounds(schema: dict[str, Any]) -> None:
    for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = schema.get(flag)
        if isinstance(value, bool):
            if value and bound in schema:
                schema[flag] = schema.pop(bound)
            else:
                del schema[flag]


def _allow_null(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]
    elif isinstance(kind, list):
        if "null" not in kind:
            schema["type"] = [*kind, "null"]
    else:
        return {"anyOf": [schema, {"type": "null"}]}
    enum = schema.get("enum")
    if isinstance(enum, list) and None not in enum:
        schema["enum"] = [*enum, None]
    return schema


def convert_document(data: dict[str, Any], *, openapi_30: bool) -> dict[str, Any]:
    """A copy of the document whose response schemas and ``components.schemas`` are JSON Schema 2020-12.

    Everything else is shared with ``data`` (not copied): only what response validation can reach is
    converted, and the rest of a multi-megabyte document is left alone.
    """
    converted = dict(data)
    components = data.get("components")
    if isinstance(components, dict):
        components = dict(components)
        schemas = components.get("schemas")
        if isinstance(schemas, dict):
            components["schemas"] = {
                name: to_json_schema(schema, openapi_30=openapi_30) for name, schema in schemas.items()
            }
        responses = components.get("responses")
        if isinstance(responses, dict):
            components["responses"] = {name: _response(response, openapi_30) for name, response in responses.items()}
        converted["components"] = components
    paths = data.get("paths")
    if isinstance(paths, dict):
        converted["paths"] = {path: _path_item(item, openapi_30) for path, item in paths.items()}
    return converted


def _path_item(item: Any, openapi_30: bool) -> Any:
    if not isinstance(item, dict):
        return item
    converted = dict(item)
    for method, operation in item.items():
        if isinstance(operation, dict) and isinstance(operation.get("responses"), dict):
            responses = operation["responses"]
            converted[method] = {
                **operation,
                "responses": {status: _response(response, openapi_30) for status, response in responses.items()},
            }
    return converted


def _response(response: Any, openapi_30: bool) -> Any:
    if not isinstance(response, dict) or not isinstance(response.get("content"), dict):
        return response
    content = {
        media: {**value, "schema": to_json_schema(value["schema"], openapi_30=openapi_30)}
        if isinstance(value, dict) and "schema" in value
        else value
        for media, value in response["content"].items()
    }
    return {**response, "content": content}
