"""The operations of a document, and which one a request is.

A request matches the path templates of the document (``/models/{model}``) by its path relative to the
integration's ``base_url``, as OpenAPI's paths are relative to the server URL. When several templates match,
the concrete one wins over the templated one, segment by segment from the left (``/users/me`` over
``/users/{id}``), as the OpenAPI specification asks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tether.openapi.refs import Locator, escape

__all__ = ["HTTP_METHODS", "Operation", "OperationIndex", "operations"]

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_VARIABLE = re.compile(r"\{[^{}/]*\}")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Operation:
    """One operation (a method on a path) of the document.

    Attributes:
        method: Upper-case, e.g. ``"GET"``.
        path: The path template as the document writes it, e.g. ``"/models/{model}"``.
        operation_id: ``operationId``, if any.
        summary: ``summary``, else the first line of ``description``, on one line.
        tags: ``tags``, in order.
        location: JSON Pointer to the operation object in the document.
        deprecated: Whether the document marks it deprecated.
        needs_input: Whether it has required parameters (other than headers) or a required body.
    """

    method: str
    path: str
    operation_id: str | None
    summary: str
    tags: tuple[str, ...]
    location: str
    deprecated: bool = False
    needs_input: bool = False

    @property
    def pattern(self) -> str:
        """The endpoint pattern tether.toml writes for it: ``"GET /models/{model}"``."""
        return f"{self.method} {self.path}"


def operations(data: dict[str, Any], locator: Locator) -> list[Operation]:
    """Every operation under ``paths``, in document order (path items that are ``$ref`` followed)."""
    paths = data.get("paths")
    if not isinstance(paths, dict):
        return []
    found = []
    for path, raw_item in paths.items():
        item, location = locator.follow(raw_item, f"/paths/{escape(str(path))}")
        if not isinstance(item, dict):
            continue
        shared = _parameters(item.get("parameters"), locator, location)
        for method in HTTP_METHODS:
            operation = item.get(method)
            if isinstance(operation, dict):
                found.append(_operation(str(path), method, operation, f"{location}/{method}", shared, locator))
    return found


def _operation(
    path: str, method: str, operation: dict[str, Any], location: str, shared: list[Any], locator: Locator
) -> Operation:
    parameters = shared + _parameters(operation.get("parameters"), locator, location)
    required = any(param.get("required") and param.get("in") in ("path", "query", "cookie") for param in parameters)
    body, _ = locator.follow(operation.get("requestBody"), f"{location}/requestBody")
    needs_body = isinstance(body, dict) and bool(body.get("required"))
    tags = operation.get("tags")
    return Operation(
        method=method.upper(),
        path=path,
        operation_id=str(operation["operationId"]) if operation.get("operationId") else None,
        summary=_one_line(operation.get("summary") or operation.get("description") or ""),
        tags=tuple(str(tag) for tag in tags) if isinstance(tags, list) else (),
        location=location,
        deprecated=operation.get("deprecated") is True,
        needs_input=required or needs_body or "{" in path,
    )


def _parameters(value: Any, locator: Locator, location: str) -> list[Any]:
    if not isinstance(value, list):
        return []
    followed = (locator.follow(param, f"{location}/parameters/{index}")[0] for index, param in enumerate(value))
    return [param for param in followed if isinstance(param, dict)]


def _one_line(text: Any) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    # Markdown emphasis reads as noise in a comment.
    return _SPACE.sub(" ", lines[0]).replace("**", "").strip() if lines else ""


class _Template:
    __slots__ = ("operations", "rank", "segments")

    def __init__(self, path: str) -> None:
        self.segments = tuple(_segment(part) for part in _split(path))
        # Literal segments rank above templated ones, leftmost first: /users/me beats /users/{id}.
        self.rank = tuple(isinstance(segment, str) for segment in self.segments)
        self.operations: dict[str, Operation] = {}

    def matches(self, parts: list[str]) -> bool:
        for segment, part in zip(self.segments, parts, strict=True):
            if isinstance(segment, str):
                if segment != part:
                    return False
            elif segment.fullmatch(part) is None:
                return False
        return True


def _segment(part: str) -> str | re.Pattern[str]:
    if not _VARIABLE.search(part):
        return part
    pieces = _VARIABLE.split(part)
    return re.compile("[^/]+".join(re.escape(piece) for piece in pieces))


def _split(path: str) -> list[str]:
    return path.strip("/").split("/")


class OperationIndex:
    """Finds the operation a request is, by method and path (relative to the server URL)."""

    def __init__(self, found: Iterable[Operation]) -> None:
        templates: dict[str, _Template] = {}
        for operation in found:
            template = templates.get(operation.path)
            if template is None:
                template = templates[operation.path] = _Template(operation.path)
            template.operations.setdefault(operation.method, operation)
        self._by_length: dict[int, list[_Template]] = {}
        for template in templates.values():
            self._by_length.setdefault(len(template.segments), []).append(template)
        for candidates in self._by_length.values():
            candidates.sort(key=lambda template: template.rank, reverse=True)

    def find(self, method: str, path: str) -> Operation | None:
        """The operation for ``method`` on ``path``, or ``None`` when the document has none."""
        parts = _split(path)
        for template in self._by_length.get(len(parts), ()):
            operation = template.operations.get(method)
            if operation is not None and template.matches(parts):
                return operation
        return None
