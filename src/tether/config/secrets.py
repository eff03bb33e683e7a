"""Secret references: the only way a credential enters ``tether.toml``.

A secret is written as ``"${ENV_VAR}"`` or ``"file:PATH"`` (relative paths are resolved against the config
file's folder). Resolution happens while the config is validated, so an unset variable or a missing file is a
config error with its key path, not a 401 at 3 AM. The resolved value lives in a :class:`Secret` whose
``repr``/``str`` never show it; every resolved value is also registered with the redactor so it is masked in
logs, errors and CLI output. Commands that only describe the config (``tether docs``) load it with
``resolve_secrets=False``: references are checked for form and kept, values are not read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from pydantic import PlainSerializer, PlainValidator, ValidationInfo

from tether.observe.redact import register_secret

__all__ = ["Secret", "SecretField", "TextOrSecretField", "expand_references", "expand_url", "is_reference"]

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_FILE_PREFIX = "file:"
_ENV_IN_TEXT = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LITERAL = (
    'a literal secret is not allowed in tether.toml; put it in an environment variable and write "${NAME}" '
    '(or keep it in a file and write "file:PATH")'
)


@dataclass(frozen=True)
class Secret:
    """A resolved credential and the reference it came from.

    Attributes:
        reference: What the config says, e.g. ``"${STRIPE_API_KEY}"`` or ``"file:/run/secrets/key"``.
        value: The credential itself. Never printed by tether.
    """

    reference: str
    value: str = field(repr=False, compare=False)

    @property
    def source(self) -> str:
        """Where the value comes from, for hints and docs: ``env var STRIPE_API_KEY`` or ``file PATH``."""
        match = _ENV_REF.match(self.reference)
        if match:
            return f"env var {match.group(1)}"
        return f"file {self.reference.removeprefix(_FILE_PREFIX)}"

    def __str__(self) -> str:
        return "***"

    def __repr__(self) -> str:
        return f"Secret({self.reference!r})"


def is_reference(value: str) -> bool:
    """Whether ``value`` is a ``${ENV}`` or ``file:PATH`` reference rather than a literal."""
    return bool(_ENV_REF.match(value)) or value.startswith(_FILE_PREFIX)


def _resolve(value: Any, info: ValidationInfo) -> Secret:
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        raise ValueError('expected a secret reference such as "${API_KEY}" or "file:PATH"')
    context = info.context or {}
    if not context.get("resolve_secrets", True):
        if not is_reference(value):
            raise ValueError(_LITERAL)
        return Secret(value, "")  # only where it is kept is wanted (tether docs): never read, never used
    env: dict[str, str] = context.get("env", os.environ)
    match = _ENV_REF.match(value)
    if match:
        name = match.group(1)
        if name not in env:
            raise ValueError(f"environment variable {name} is not set; export it before starting tether")
        if not env[name]:
            raise ValueError(f"environment variable {name} is set but empty")
        return _registered(Secret(value, env[name]))
    if value.startswith(_FILE_PREFIX):
        base_dir: Path = context.get("base_dir", Path.cwd())
        path = (base_dir / value.removeprefix(_FILE_PREFIX)).expanduser()
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror or exc}") from None
        if not text:
            raise ValueError(f"secret file {path} is empty")
        return _registered(Secret(value, text))
    raise ValueError(_LITERAL)


def expand_url(value: str, info: ValidationInfo) -> str:
    """A store or state URL with its ``${ENV}`` references replaced by their values (see
    :func:`expand_references`); as written when the config is loaded with ``resolve_secrets=False``."""
    context = info.context or {}
    if not context.get("resolve_secrets", True):
        return value
    return expand_references(value, context.get("env", os.environ))


def expand_references(value: str, env: Mapping[str, str]) -> str:
    """``value`` (a URL) with its ``${ENV}`` references replaced by their values from ``env``.

    ``"${DATABASE_URL}"`` alone is replaced as it is; a reference inside a URL
    (``"postgresql://app:${PGPASSWORD}@db/app"``) is percent-encoded, so a password with ``@`` or ``/`` stays a
    password. Every value is registered with the redactor: a URL's password must not reach a log.

    Raises:
        ValueError: a referenced variable is not set (or empty).
    """
    if "${" not in value:
        return value
    whole = _ENV_IN_TEXT.fullmatch(value) is not None

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if not env.get(name):
            raise ValueError(f"environment variable {name} is {'empty' if name in env else 'not set'}; export it")
        register_secret(env[name])
        return env[name] if whole else quote(env[name], safe="")

    return _ENV_IN_TEXT.sub(substitute, value)


def _registered(secret: Secret) -> Secret:
    register_secret(secret.value)
    return secret


def _resolve_text_or_secret(value: Any, info: ValidationInfo) -> str | Secret:
    if isinstance(value, str) and not is_reference(value):
        return value
    return _resolve(value, info)


def _serialize(value: str | Secret) -> str:
    return value.reference if isinstance(value, Secret) else value


SecretField = Annotated[Secret, PlainValidator(_resolve), PlainSerializer(_serialize)]
"""A field that must be a reference; a literal value is refused."""

TextOrSecretField = Annotated[str | Secret, PlainValidator(_resolve_text_or_secret), PlainSerializer(_serialize)]
"""A field that may be literal (a username) or a reference (when it is sensitive for this API)."""
