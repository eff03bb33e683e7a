"""Reading an OpenAPI 3.x document (YAML or JSON), once per process.

A document is parsed as JSON would see it: YAML timestamps stay strings, only ``true``/``false`` are booleans
(YAML 1.1's ``yes``/``on`` would turn a property named ``on`` into ``True``), and mapping keys are strings
(an unquoted ``200:`` response code is the string ``"200"``). Parsed documents are cached per (path,
modification time), so every hub and client of a process shares one copy of a multi-megabyte document and an
edited file is read again.

Problems are :class:`~tether.errors.ConfigError` naming the document: it is part of the configuration.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tether.errors import ConfigError, ConfigProblem

__all__ = ["OpenAPIDocument", "clear_cache", "load_document"]

# libyaml's parser is ~10x faster than the pure-Python one on a 3 MB document; it is optional in PyYAML.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_BOOL = "tag:yaml.org,2002:bool"


class _JSONLikeLoader(_BaseLoader):  # type: ignore[valid-type, misc]
    """A safe loader whose results are what the same document would give as JSON."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        if all(type(key) is str for key in mapping):
            return mapping
        return {_key(key): value for key, value in mapping.items()}


def _key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return "null" if key is None else str(key)


_JSONLikeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_TIMESTAMP, _BOOL)]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}
_JSONLikeLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


@dataclass(frozen=True, eq=False)
class OpenAPIDocument:
    """A parsed OpenAPI 3.x document.

    Attributes:
        path: Where it was read from (absolute).
        version: The ``openapi`` field, e.g. ``"3.1.0"``.
        data: The document, as JSON would give it. Shared: never modify it.
    """

    path: Path
    version: str
    data: dict[str, Any]

    @property
    def is_30(self) -> bool:
        """Whether this is OpenAPI 3.0 (its schemas are an extended subset of JSON Schema draft 4, with
        ``nullable``), rather than 3.1+ (JSON Schema 2020-12)."""
        return self.version.startswith("3.0")

    @property
    def uri(self) -> str:
        """The document's base URI, against which its ``$ref`` values resolve."""
        return self.path.as_uri()

    @property
    def title(self) -> str:
        """``info.title``, or the file's name."""
        info = self.data.get("info")
        title = info.get("title") if isinstance(info, dict) else None
        return str(title) if title else self.path.stem


_cache: dict[Path, tuple[tuple[int, int], OpenAPIDocument]] = {}
_lock = threading.Lock()


def load_document(path: str | os.PathLike[str]) -> OpenAPIDocument:
    """Read, parse and check an OpenAPI 3.x document, or return the copy already read by this process.

    Raises:
        ConfigError: the file cannot be read, is not YAML or JSON, is Swagger 2.0, or is not OpenAPI 3.x.
    """
    file = Path(path).expanduser().resolve()
    try:
        stat = file.stat()
    except OSError as exc:
        raise _error(file, f"cannot read the OpenAPI document: {exc.strerror or exc}") from None
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _lock:
        cached = _cache.get(file)
        if cached is not None and cached[0] == stamp:
            return cached[1]
    # Parsed outside the lock: a slow parse must not hold up a caller that wants another document.
    document = _parse(file)
    with _lock:
        _cache[file] = (stamp, document)
    return document


def clear_cache() -> None:
    """Forget every document read so far (for tests)."""
    with _lock:
        _cache.clear()


def _parse(file: Path) -> OpenAPIDocument:
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise _error(file, f"cannot read the OpenAPI document: {exc.strerror or exc}") from None
    data = _decode(file, raw)
    if not isinstance(data, dict):
        raise _error(file, "not an OpenAPI document: expected a mapping at the top level")
    if "swagger" in data:
        raise _error(
            file,
            f"Swagger {data['swagger']} (OpenAPI 2) is not supported; convert it to OpenAPI 3 first "
            "(e.g. `npx swagger2openapi FILE -o openapi.yaml`, or the Swagger Editor's Convert menu)",
        )
    version = str(data.get("openapi", ""))
    if not version:
        raise _error(file, "not an OpenAPI document: it has no 'openapi' version field")
    if not re.match(r"^3\.\d+(\.\d+)?", version):
        raise _error(file, f"OpenAPI {version} is not supported; tether reads OpenAPI 3.0 and 3.1 documents")
    return OpenAPIDocument(file, version, data)


def _decode(file: Path, raw: bytes) -> Any:
    if raw.lstrip()[:1] in (b"{", b"["):
        # JSON is valid YAML too, but the JSON parser is far faster; YAML takes what JSON refuses (comments).
        try:
            return json.loads(raw)
        except ValueError:
            pass
    try:
        return yaml.load(raw, Loader=_JSONLikeLoader)  # noqa: S506 - a safe loader (SafeLoader's subclass)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or "invalid syntax"
        raise _error(file, f"not valid YAML or JSON{at}: {problem}") from None


def _error(file: Path, message: str) -> ConfigError:
    return ConfigError(str(file), [ConfigProblem("", message)])
