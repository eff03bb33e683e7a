"""Drafting an integration from an OpenAPI document: what ``tether init --openapi FILE`` writes.

- ``servers[0]`` is the ``base_url``, its variables replaced by their defaults; the other servers, and the
  values a variable may take, are noted in comments.
- ``securitySchemes`` give the ``auth`` table (:mod:`tether.openapi.security`).
- ``info`` gives the name (a slug of the title), ``purpose`` and, from ``externalDocs``, ``docs_url``.
- The operations are listed as endpoint patterns grouped by tag, relative to the server URL as the document's
  paths are. They stay comments: an ``endpoints`` table must set a limit, and no document states one.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from tether.errors import ConfigError, ConfigProblem
from tether.openapi.document import OpenAPIDocument
from tether.openapi.operations import Operation, operations
from tether.openapi.refs import Locator, registry_for
from tether.openapi.render import EndpointGroup, IntegrationDraft
from tether.openapi.security import auth_from_document

__all__ = ["draft_integration", "slug"]

_VARIABLE = re.compile(r"\{([^{}]*)\}")
_MARKDOWN_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_URL = re.compile(r"https?://[^\s)\"'<>\]]+")
_HEALTHY = ("health", "healthz", "ping", "status", "me", "user")
_UNTAGGED = "Other (no tag)"


def slug(title: str) -> str:
    """An integration name from a title: ``"OpenAI API"`` → ``openai``, ``"Swagger Petstore"`` →
    ``swagger-petstore``."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    words = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    trimmed = re.sub(r"-(rest-)?api$", "", words)
    return (trimmed or words or "api")[:40].strip("-") or "api"


def draft_integration(
    document: OpenAPIDocument, *, name: str | None = None, base_url: str | None = None, openapi: str | None = None
) -> IntegrationDraft:
    """The integration ``tether init --openapi`` writes for ``document``.

    Args:
        document: The parsed document.
        name: The integration's name; by default a slug of ``info.title``.
        base_url: Overrides the document's first server.
        openapi: The document's path as the config file will name it (relative to the config's folder).

    Raises:
        ConfigError: the document has no absolute server URL and ``base_url`` was not given.
    """
    data = document.data
    info = data.get("info")
    if not isinstance(info, dict):
        info = {}
    name = name or slug(document.title)
    server, notes = _base_url(document)
    if base_url is None:
        if server is None or not server.startswith(("http://", "https://")):
            where = f"is relative ({server!r})" if server else "is missing"
            example = f"https://api.example.com{server}" if server and server.startswith("/") else "https://HOST"
            problem = f"the document's server URL {where}; pass --base-url {example}"
            raise ConfigError(str(document.path), [ConfigProblem("servers", problem)])
        base_url = server.rstrip("/")
    elif server is not None:
        notes.insert(0, f"The document's server is {server}; its paths are relative to that.")
    locator = Locator(document, registry_for(document.uri, data))
    found = operations(data, locator)
    description = _first_sentence(info.get("description"))
    title = document.title
    purpose = f"{title}: {description}" if description and description.lower() != title.lower() else title
    external = data.get("externalDocs")
    docs_url = str(external["url"]) if isinstance(external, dict) and external.get("url") else None
    guess = _URL.search(str(info.get("description") or ""))
    source = document.path.name
    return IntegrationDraft(
        name=name,
        base_url=base_url,
        auth=auth_from_document(document, locator, name, base_url),
        origin=[
            f'Drafted by `tether init --openapi {source}` from "{title}" {info.get("version", "")}'.rstrip()
            + f" (OpenAPI {document.version}).",
        ],
        purpose=purpose[:200],
        docs_url=docs_url if docs_url and docs_url.startswith(("http://", "https://")) else None,
        docs_url_guess=guess.group(0).rstrip(".,;") if guess else None,
        base_url_notes=notes,
        openapi=openapi,
        health=_health(found),
        groups=_groups(data, found),
    )


def _base_url(document: OpenAPIDocument) -> tuple[str | None, list[str]]:
    servers = [server for server in document.data.get("servers") or [] if isinstance(server, dict)]
    if not servers or not servers[0].get("url"):
        return None, []
    notes: list[str] = []
    first = _substitute(servers[0], notes)
    for other in servers[1:]:
        description = f" ({other['description']})" if other.get("description") else ""
        notes.append(f"The document also lists the server {_substitute(other, [])}{description}.")
    return first, notes


def _substitute(server: dict[str, Any], notes: list[str]) -> str:
    variables = server.get("variables")
    if not isinstance(variables, dict):
        variables = {}

    def value(match: re.Match[str]) -> str:
        variable = variables.get(match.group(1))
        if not isinstance(variable, dict) or "default" not in variable:
            return match.group(0)
        default = str(variable["default"])
        choices = [str(choice) for choice in variable.get("enum") or [] if str(choice) != default]
        if choices:
            notes.append(f"{{{match.group(1)}}} is {default!r} here; the document also allows: {', '.join(choices)}.")
        return default

    return _VARIABLE.sub(value, str(server["url"]))


def _first_sentence(text: Any) -> str | None:
    if not text:
        return None
    lines: list[str] = []
    for line in str(text).strip().splitlines():
        if not line.strip():
            if lines:
                break
            continue
        if not line.lstrip().startswith("#"):  # a Markdown heading repeats the title
            lines.append(line.strip())
    paragraph = _MARKDOWN_LINK.sub(r"\1", " ".join(lines)).replace("**", "").replace("`", "")
    sentence = re.split(r"(?<=[.!?])\s", paragraph, maxsplit=1)[0].strip()
    return sentence or None


def _health(found: list[Operation]) -> str | None:
    simple = [op for op in found if op.method == "GET" and not op.needs_input and not op.deprecated]
    if not simple:
        return None

    def rank(operation: Operation) -> tuple[bool, int, int]:
        last = operation.path.rstrip("/").rpartition("/")[2].lower()
        return (last not in _HEALTHY, operation.path.count("/"), len(operation.path))

    return min(simple, key=rank).pattern


def _groups(data: dict[str, Any], found: list[Operation]) -> list[EndpointGroup]:
    declared = [str(tag["name"]) for tag in data.get("tags") or [] if isinstance(tag, dict) and "name" in tag]
    groups: dict[str, list[Operation]] = {tag: [] for tag in declared}
    untagged = []
    for operation in found:
        if operation.tags:
            groups.setdefault(operation.tags[0], []).append(operation)
        else:
            untagged.append(operation)
    result = [EndpointGroup(tag, ops) for tag, ops in groups.items() if ops]
    if untagged:
        result.append(EndpointGroup(_UNTAGGED, untagged))
    return result
