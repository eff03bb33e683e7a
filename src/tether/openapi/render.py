"""A drafted integration as a commented ``tether.toml`` table.

Every key the draft sets, and the ones a newcomer will want next, comes with a comment that says what it does;
``TODO`` marks what only a person can fill in (limits and timeouts no OpenAPI document states). The output is
checked by :func:`tether.config.parse_config` before it is written (see ``tether init``).
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from typing import Any

from tether.openapi.operations import Operation

__all__ = ["AuthDraft", "EndpointGroup", "IntegrationDraft", "render_header", "render_integration", "toml_value"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_LINE = 118
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass
class AuthDraft:
    """How the draft authenticates.

    Attributes:
        keys: The ``auth`` table to write (empty: none is written).
        notes: Comment lines above it: where it came from, what to export, caveats.
        example: Commented-out TOML lines of an alternative the user may switch on.
    """

    keys: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    example: list[str] = field(default_factory=list)


@dataclass
class EndpointGroup:
    """Operations under one tag."""

    name: str
    operations: list[Operation]


@dataclass
class IntegrationDraft:
    """Everything ``tether init`` writes for one integration."""

    name: str
    base_url: str
    auth: AuthDraft
    origin: list[str] = field(default_factory=list)
    purpose: str | None = None
    docs_url: str | None = None
    docs_url_guess: str | None = None
    base_url_notes: list[str] = field(default_factory=list)
    openapi: str | None = None
    health: str | None = None
    groups: list[EndpointGroup] = field(default_factory=list)


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string."""
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def toml_value(value: Any) -> str:
    """A string, boolean, number or list of them as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return toml_string(str(value))


def toml_key(key: str) -> str:
    """A key, quoted unless it is bare (a dot in a bare key would make a nested table)."""
    return key if _BARE_KEY.match(key) else toml_string(key)


def render_header() -> str:
    """The comment block that opens a new tether.toml, with the top-level keys at their defaults."""
    return "\n".join(
        [
            "# tether.toml: the third-party APIs this project depends on, one [integrations.NAME] table each.",
            "# Every key is in docs/configuration.md; `tether check` validates this file and `tether doctor NAME`",
            "# diagnoses an integration. Credentials are never written here: only ${ENV_VAR} or file:PATH.",
            "",
            '# Where rate-limit budgets, 429 pauses and circuit breakers live: "memory" (this process) or',
            '# "redis://host:6379/0" to share them between every process on every machine.',
            '# state = "memory"',
            "",
            "# Where tether keeps call records, the HTTP cache, OAuth tokens and the webhook inbox: a SQLite file",
            '# next to this one, or "postgresql://user@host:5432/db" shared by every machine.',
            '# store = "sqlite:///tether.db"',
            "",
        ]
    )


def render_integration(draft: IntegrationDraft) -> str:
    """The commented ``[integrations.NAME]`` table of ``draft``."""
    name = toml_key(draft.name)
    lines = [f"# ── {draft.name} " + "─" * max(3, 60 - len(draft.name))]
    lines += [f"# {line}" for line in draft.origin]
    lines += [
        "# TODO marks what only you can fill in. Check the result with `tether check`.",
        f"[integrations.{name}]",
        "# What this API is for, in one line: shown by `tether docs`, `tether status` and in alerts.",
        f"purpose = {toml_string(draft.purpose)}" if draft.purpose else '# purpose = "TODO: what we use it for"',
        "# TODO: the team or person who answers for this integration (named in alerts and the runbook).",
        '# owner = "platform-team"',
    ]
    if draft.docs_url:
        lines += ["# The provider's API reference.", f"docs_url = {toml_string(draft.docs_url)}"]
    elif draft.docs_url_guess:
        lines += [
            "# The provider's API reference (a link found in the document's description; check it).",
            f"# docs_url = {toml_string(draft.docs_url_guess)}",
        ]
    else:
        lines += ["# The provider's API reference.", '# docs_url = "https://…"']
    lines += [
        "",
        '# Every request path is relative to this URL: client.get("/things") calls <base_url>/things.',
        *_comments(draft.base_url_notes),
        f"base_url = {toml_string(draft.base_url)}",
        "",
        *_auth(draft),
        "",
        *_policies(),
        "",
        *_health_and_openapi(draft),
    ]
    lines += _endpoints(draft)
    # Text from the document lands in comments: a control character there (a newline above all) would end the
    # comment and make the rest of the line TOML.
    return "\n".join(_CONTROL.sub(" ", line).rstrip() for line in lines) + "\n"


def _auth(draft: IntegrationDraft) -> list[str]:
    auth = draft.auth
    notes = list(auth.notes)
    if auth.keys:
        notes.insert(
            1,
            'Secrets are never written here: "${VAR}" is read from the environment, "file:PATH" from a file.',
        )
    lines = _comments(notes)
    if auth.keys:
        if len(auth.keys) <= 4 and not any(isinstance(value, list) for value in auth.keys.values()):
            pairs = ", ".join(f"{toml_key(key)} = {toml_value(value)}" for key, value in auth.keys.items())
            lines.append(f"auth = {{ {pairs} }}")
        else:
            lines += [f"auth.{toml_key(key)} = {toml_value(value)}" for key, value in auth.keys.items()]
    lines += [f"# {line}" if line else "#" for line in auth.example]
    return lines


def _comments(notes: list[str]) -> list[str]:
    return [f"# {line}" for note in notes for line in textwrap.wrap(note, 104, break_on_hyphens=False)]


def _policies() -> list[str]:
    return [
        "# Time limits: total is one deadline for the whole call, retries and waits included; connect bounds",
        "# each connection attempt. TODO: fit them to the API's real latency: raise total for slow endpoints",
        "# (long generations, uploads), lower it where a user is waiting.",
        'timeout = { total = "30s", connect = "5s" }',
        "",
        "# Retries with exponential backoff and full jitter, on connection errors, timeouts and",
        "# 408/429/500/502/503/504. attempts counts the first try: 4 is up to 3 retries, after about 1, 2, 4 s.",
        "# POST and PATCH are retried only with an idempotency key: set idempotency_header if the API takes one.",
        'retry = { attempts = 4, backoff = "1s", max_backoff = "30s" }',
        '# idempotency_header = "Idempotency-Key"',
        "",
        "# Client-side rate limit, so the API's limit is not hit in the first place. TODO: copy the limits",
        '# from the provider\'s docs ("100/s", "6000/1m"); OpenAPI documents do not state them. Without one,',
        "# tether still obeys Retry-After and the API's rate-limit headers.",
        '# rate_limit = "60/1m"',
        "# For AI APIs that count tokens too: the budget per minute (each response's usage is debited).",
        "# tokens_per_minute = 90000",
        "",
        "# The circuit breaker is on by default: when half the calls over 30 s fail (10 calls at least), calls",
        "# fail at once for 30 s instead of piling up on a broken API. Tune it here, or breaker = false.",
        '# breaker = { failure_ratio = 0.5, window = "30s", min_calls = 10, open_for = "30s" }',
        "",
        "# If the API is versioned by a header, pin the version the code was written against.",
        '# version = "2024-01-01"',
        '# version_header = "X-API-Version"',
    ]


def _health_and_openapi(draft: IntegrationDraft) -> list[str]:
    lines = ["# A cheap request that proves the integration works, for `tether doctor` and health checks."]
    if draft.health:
        lines.append(f"# health = {toml_string(draft.health)}  # TODO: a GET without parameters; is it cheap?")
    else:
        lines.append('# health = "GET /health"')
    if draft.openapi is not None:
        lines += [
            "",
            "# The API's OpenAPI document, relative to this file. With validate = true, response.json() checks",
            "# each JSON response against the document's schema for its operation and status, and raises",
            "# SchemaMismatchError naming the first field that differs (e.g. $.data[0].created): a silent",
            "# format change is caught at the first response instead of deep in the code, for some CPU per call.",
            f"openapi = {toml_string(draft.openapi)}",
            "validate = false",
        ]
    return lines


def _endpoints(draft: IntegrationDraft) -> list[str]:
    if not draft.groups:
        return []
    every = [operation for group in draft.groups for operation in group.operations]
    example = next((op for op in every if op.method == "POST" and not op.deprecated), every[0])
    name = toml_key(draft.name)
    lines = [
        "",
        f"# The document's {len(every)} operations by tag, as endpoint patterns (relative to base_url). A group of",
        "# endpoints can have limits of its own, on top of the integration's; each such table needs a",
        "# rate_limit, tokens_per_minute or breaker, and must come after every key above. For example:",
        f"# [integrations.{name}.endpoints.{toml_string(example.pattern)}]",
        '# rate_limit = "60/1m"  # TODO: the provider\'s limit for this endpoint',
        '# A * matches any run of characters: "GET /files/*" is every GET under /files/.',
    ]
    width = min(max(len(op.pattern) for op in every) + 2, 56)
    for group in draft.groups:
        lines += ["#", f"# {group.name} ({len(group.operations)})"]
        for operation in group.operations:
            lines.append(_endpoint_line(operation, width))
    return lines


def _endpoint_line(operation: Operation, width: int) -> str:
    head = f"# {toml_string(operation.pattern)}".ljust(width + 2)
    about = operation.operation_id or ""
    if operation.deprecated:
        about += " (deprecated)"
    if operation.summary:
        about += (" — " if about else "") + operation.summary
    text = f"{head}  {about}".rstrip()
    return text if len(text) <= _LINE else text[: _LINE - 1] + "…"
