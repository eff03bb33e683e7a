"""``$ref`` resolution: the whole document is one JSON Schema 2020-12 resource in a ``referencing`` registry.

Schemas are resolved by ``jsonschema`` through the registry (``#/components/schemas/Pet`` and chains of
them). The objects around them that may be references too (path items, responses, security schemes) are
followed with :func:`follow`, which also tracks where the object lives, so that a schema inside it can be
named by an absolute reference (``file:///…/openapi.yaml#/components/responses/NotFound/content/…``).

References to other files are not supported: bundle such a document into one file first.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from tether.errors import ConfigError, ConfigProblem
from tether.openapi.document import OpenAPIDocument

__all__ = ["BUNDLE_HINT", "Locator", "escape", "registry_for"]

BUNDLE_HINT = "bundle the document into one file first (e.g. `npx @redocly/cli bundle openapi.yaml -o bundled.yaml`)"
_MAX_HOPS = 32


def escape(part: str) -> str:
    """One JSON Pointer token (RFC 6901): ``/models/{id}`` → ``~1models~1{id}``."""
    return part.replace("~", "~0").replace("/", "~1")


def registry_for(uri: str, contents: dict[str, Any]) -> Registry[Any]:
    """A registry holding ``contents`` as the one resource at ``uri``."""
    # The default registry retrieves nothing: a reference to another file is Unresolvable, reported as such.
    resource: Resource[Any] = DRAFT202012.create_resource(contents)
    registry: Registry[Any] = Registry().with_resource(uri, resource)
    return registry


class Locator:
    """Follows the ``$ref`` of non-schema objects within one document, keeping track of where they live."""

    def __init__(self, document: OpenAPIDocument, registry: Registry[Any]) -> None:
        self.document = document
        self._resolver = registry.resolver(base_uri=document.uri)

    def follow(self, value: Any, location: str) -> tuple[Any, str]:
        """``value`` (found at JSON Pointer ``location``), or what its ``$ref`` chain ends at, and where.

        Raises:
            ConfigError: the reference points to another file, nowhere, or round in a loop.
        """
        for _ in range(_MAX_HOPS):
            ref = value.get("$ref") if isinstance(value, dict) else None
            if not isinstance(ref, str):
                return value, location
            if not ref.startswith("#"):
                raise self._error(f"$ref {ref!r} at {location or '/'} points to another file; {BUNDLE_HINT}")
            try:
                value = self._resolver.lookup(ref).contents
            except Unresolvable:
                raise self._error(f"$ref {ref!r} at {location or '/'} points to nothing in the document") from None
            location = unquote(ref[1:])  # a pointer as text; callers quote it again for a URI
        raise self._error(f"$ref chain at {location} does not end (a loop?)")

    def _error(self, message: str) -> ConfigError:
        return ConfigError(str(self.document.path), [ConfigProblem("", message)])
