"""A schema mismatch in words that show where and what was expected, never the value found.

A response body can hold tokens, personal data or card numbers; an error message goes to logs, alerting and
bug trackers. So the description names the JSON path, the schema keyword and what the schema expects (all of
which come from the document), plus the JSON type of what was found, and nothing of the value itself.
"""

from __future__ import annotations

import re
from typing import Any

from jsonschema.exceptions import ValidationError

__all__ = ["describe", "json_path"]

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LIMIT = 60


def json_path(parts: Any) -> str:
    """A JSONPath for a sequence of keys and indexes: ``$.data[0].created``, ``$['odd key']``."""
    path = "$"
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            path += f".{part}"
        else:
            path += "['" + part.replace("\\", "\\\\").replace("'", "\\'") + "']"
    return path


def describe(error: ValidationError) -> tuple[str, str]:
    """The JSON path of ``error`` and what the schema expected there, without the instance's value."""
    keyword = str(error.validator) if error.validator is not None else "false"
    expected: Any = error.validator_value
    instance = error.instance
    parts = list(error.absolute_path)
    if keyword == "type":
        kinds = expected if isinstance(expected, list) else [expected]
        text = f"expected {' or '.join(str(kind) for kind in kinds)}, got {_json_type(instance)}"
    elif keyword == "required" and isinstance(instance, dict):
        missing = [name for name in expected if name not in instance]
        parts.append(missing[0] if missing else "?")
        text = "required property is missing"
    elif keyword in ("additionalProperties", "unevaluatedProperties") and isinstance(instance, dict):
        extra = _extra_property(error)
        if extra is not None:
            parts.append(extra)
        text = f"property not allowed by the schema ({keyword}: false)"
    elif keyword == "enum":
        text = f"expected one of {_short(expected)}, got another {_json_type(instance)}"
    elif keyword == "const":
        text = f"expected {_short(expected)}, got another {_json_type(instance)}"
    elif keyword == "oneOf" and not error.context:
        text = "matches more than one of the oneOf alternatives"
    elif keyword in ("anyOf", "oneOf"):
        text = f"a {_json_type(instance)} that matches none of the {keyword} alternatives"
    elif error.validator is None:
        text = "no value is allowed here (a false schema)"
    else:
        text = f"expected {keyword} {_short(expected)}"
    return json_path(parts), text


# JSON Schema's name for each Python type json.loads makes; bool before int, as a bool is an int.
_JSON_TYPES = (
    (type(None), "null"),
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def _json_type(value: Any) -> str:
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), type(value).__name__)


def _extra_property(error: ValidationError) -> str | None:
    """The first property of the instance the schema does not declare (a key, which the path shows anyway)."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    declared = schema.get("properties") or {}
    patterns = [re.compile(pattern) for pattern in (schema.get("patternProperties") or {})]
    instance = error.instance if isinstance(error.instance, dict) else {}
    for key in instance:
        if key not in declared and not any(pattern.search(key) for pattern in patterns):
            return str(key)
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _LIMIT else text[: _LIMIT - 1] + "…"
