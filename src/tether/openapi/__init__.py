"""OpenAPI 3.x documents: drafting ``tether.toml`` from one (``tether init --openapi``) and checking responses
against it (``validate = true``).

- :mod:`~tether.openapi.document`: reading a document (YAML or JSON), cached per file and modification time.
- :mod:`~tether.openapi.dialect`: OpenAPI 3.0 schemas as JSON Schema 2020-12 (3.1's own dialect).
- :mod:`~tether.openapi.refs`: ``$ref`` resolution, the document as one ``referencing`` resource.
- :mod:`~tether.openapi.operations`: the operations, and which one a request is.
- :mod:`~tether.openapi.validate` and :mod:`~tether.openapi.mismatch`: response validation and its error.
- :mod:`~tether.openapi.draft`, :mod:`~tether.openapi.security` and :mod:`~tether.openapi.render`: the
  commented integration table ``tether init`` writes.
"""

from tether.openapi.document import OpenAPIDocument, load_document
from tether.openapi.draft import draft_integration, slug
from tether.openapi.render import IntegrationDraft, render_header, render_integration
from tether.openapi.validate import ResponseValidator, response_validator

__all__ = [
    "IntegrationDraft",
    "OpenAPIDocument",
    "ResponseValidator",
    "draft_integration",
    "load_document",
    "render_header",
    "render_integration",
    "response_validator",
    "slug",
]
