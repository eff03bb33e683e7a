"""Finding, reading and validating ``tether.toml`` into errors a person can act on.

Every problem names the file, the key path (``integrations.stripe.retry.attempts``) and what is expected;
unknown keys come with a did-you-mean. All problems are reported at once, not the first one only.
"""

from __future__ import annotations

import difflib
import os
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from tether.config.models import TetherConfig
from tether.errors import ConfigError, ConfigProblem

__all__ = ["find_config", "load_config", "parse_config"]

ENV_VAR = "TETHER_CONFIG"
DEFAULT_NAME = "tether.toml"


def find_config(path: str | os.PathLike[str] | None = None) -> Path:
    """The config file to use: ``path`` (``--config``), then ``$TETHER_CONFIG``, then ``./tether.toml``."""
    if path is not None:
        return Path(path)
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return Path(from_env)
    return Path.cwd() / DEFAULT_NAME


def load_config(
    path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None, resolve_secrets: bool = True
) -> TetherConfig:
    """Read and validate the config file, resolving secret references.

    With ``resolve_secrets=False`` references are checked for form but not read: each secret's ``value`` is
    empty. For commands that describe the config without calling an API.

    Raises:
        ConfigError: the file is missing, is not TOML, or does not match the schema.
    """
    file = find_config(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = f"create it, pass --config PATH, or set ${ENV_VAR}"
        raise ConfigError(str(file), [ConfigProblem("", f"file not found; {hint}")]) from None
    except OSError as exc:
        raise ConfigError(str(file), [ConfigProblem("", f"cannot read: {exc.strerror}")]) from None
    return parse_config(
        text, source=str(file), base_dir=file.resolve().parent, env=env, resolve_secrets=resolve_secrets
    )


def parse_config(
    text: str,
    *,
    source: str = DEFAULT_NAME,
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    resolve_secrets: bool = True,
) -> TetherConfig:
    """Validate TOML text; see :func:`load_config`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [ConfigProblem("", f"not valid TOML: {exc}")]) from None
    context = {
        "env": os.environ if env is None else env,
        "base_dir": base_dir or Path.cwd(),
        "resolve_secrets": resolve_secrets,
    }
    try:
        return TetherConfig.model_validate(data, context=context)
    except ValidationError as exc:
        problems = [_problem(error) for error in exc.errors(include_url=False)]
        raise ConfigError(source, problems) from None


def _problem(error: ErrorDetails) -> ConfigProblem:
    path, parent = _walk(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        key = path[-1] if path else ""
        message = "unknown key"
        if parent is not None:
            close = difflib.get_close_matches(key, _field_names(parent), n=1, cutoff=0.6)
            if close:
                message += f"; did you mean {close[0]!r}?"
            else:
                message += f"; expected one of: {', '.join(sorted(_field_names(parent)))}"
    elif kind == "missing":
        message = "required key is missing"
    elif kind == "union_tag_invalid" or kind == "union_tag_not_found":
        message = f"'type' must be one of {', '.join(repr(tag) for tag in _auth_tags())}"
    else:
        # Never echo what was written under auth: a wrong-typed value there may still be a credential.
        message = _describe(error, echo_input="auth" not in path)
    return ConfigProblem(".".join(path), message)


def _describe(error: ErrorDetails, *, echo_input: bool) -> str:
    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    value = error.get("input")
    if not echo_input or error["type"] in {"value_error", "assertion_error"} or isinstance(value, dict | list):
        return message
    return f"{message[0].lower()}{message[1:]} (got {value!r})"


def _walk(loc: Sequence[int | str]) -> tuple[list[str], type[BaseModel] | None]:
    """The loc as a key path (discriminator tags dropped) and the model that holds the last key."""
    path: list[str] = []
    current: Any = TetherConfig
    parent: type[BaseModel] | None = None
    items = list(loc)
    index = 0
    while index < len(items):
        part = items[index]
        current = _strip_optional(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            parent = current
            field = _field_by_key(current, str(part))
            path.append(str(part))
            current = field.annotation if field is not None else None
        elif get_origin(current) in (dict, Mapping):
            path.append(str(part))
            current = get_args(current)[1]
        elif _union_members(current):
            # A discriminated union puts the tag in the loc; it is not a key the user wrote.
            members = [m for m in _union_members(current) if isinstance(m, type) and issubclass(m, BaseModel)]
            chosen = next((m for m in members if _tag(m) == part), None)
            if chosen is not None:
                current = chosen
                index += 1
                continue
            path.append(str(part))
            current = None
        else:
            path.append(str(part))
            current = None
        index += 1
    return path, parent


def _auth_tags() -> list[object]:
    from tether.config.models import AuthConfig

    return [_tag(member) for member in _union_members(AuthConfig)]


def _field_by_key(model: type[BaseModel], key: str) -> Any:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field
    return None


def _field_names(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _tag(model: type[BaseModel]) -> object:
    field = model.model_fields.get("type")
    if field is None:
        return None
    args = get_args(field.annotation)
    return args[0] if args else None


def _union_members(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    if get_origin(annotation) is typing.Annotated:
        return _union_members(get_args(annotation)[0])
    return ()


def _strip_optional(annotation: Any) -> Any:
    if get_origin(annotation) is typing.Annotated:
        annotation = get_args(annotation)[0]
    members = _union_members(annotation)
    non_none = [m for m in members if m is not type(None)]
    if members and len(non_none) == 1:
        return _strip_optional(non_none[0])
    return annotation
