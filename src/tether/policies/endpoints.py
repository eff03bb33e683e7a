"""Endpoint patterns: which configured rule applies to a request. Pure.

A pattern is ``"METHOD /path"`` or ``"/path"`` (any method). In the path, ``*`` matches any run of characters,
``/`` included, and ``{name}`` matches one path segment (a template, as API docs and OpenAPI write them:
``"GET /v1/users/{id}/repos"``); nothing else is special. Patterns match the request's path relative to the
integration's ``base_url`` (what the code passes to ``client.get``), without the query string. When several
match, the longest pattern wins, so the order they are written in does not matter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

__all__ = ["EndpointRules", "relative_path"]

T = TypeVar("T")

_TEMPLATE = re.compile(r"\{[^{}/]*\}")


class _Pattern:
    __slots__ = ("method", "regex", "text")

    def __init__(self, text: str) -> None:
        method, _, path = text.strip().rpartition(" ")
        method = method.strip().upper()
        self.text = text
        self.method = None if method in ("", "*") else method
        parts = []
        for glob_part in path.split("*"):
            pieces = _TEMPLATE.split(glob_part)
            parts.append("[^/]+".join(re.escape(piece) for piece in pieces))
        self.regex = re.compile(".*".join(parts) + r"\Z")

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and self.regex.match(path) is not None


class EndpointRules(Generic[T]):
    """Values per endpoint pattern; :meth:`lookup` returns the value of the longest matching pattern."""

    def __init__(self, rules: Mapping[str, T] | Iterable[tuple[str, T]] = ()) -> None:
        items = rules.items() if isinstance(rules, Mapping) else rules
        self._rules = sorted(((_Pattern(text), value) for text, value in items), key=lambda r: -len(r[0].text))

    def lookup(self, method: str, path: str) -> T | None:
        for pattern, value in self._rules:
            if pattern.matches(method, path):
                return value
        return None

    def pattern(self, method: str, path: str) -> str | None:
        """The text of the longest pattern that matches, as configured."""
        for pattern, _ in self._rules:
            if pattern.matches(method, path):
                return pattern.text
        return None

    def __bool__(self) -> bool:
        return bool(self._rules)


def relative_path(path: str, base_path: str) -> str:
    """A request's path as the integration's code wrote it: relative to ``base_url``'s path ``base_path``."""
    if base_path and (path == base_path or path.startswith(base_path + "/")):
        return path[len(base_path) :] or "/"
    return path
