"""``tether init``: a commented ``[integrations.NAME]`` table for a new integration, drafted from the API's
OpenAPI document with ``--openapi FILE``.

The table goes to the config file (``--config``, ``$TETHER_CONFIG``, ``./tether.toml``): appended when the file
exists (an integration of the same name is refused, and nothing already there is rewritten), created with a
short commented header when it does not. What would be written is first validated with tether's own config
parser, so tether never leaves a file it cannot read.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import typer

from tether.cli._output import esc, fail, say
from tether.config.loader import find_config, parse_config
from tether.errors import ConfigError

if TYPE_CHECKING:
    from tether.openapi.render import IntegrationDraft

__all__ = ["init"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def init(
    ctx: typer.Context,
    name: str | None = typer.Argument(
        None, help="The integration's name (letters, digits, -, _, .); with --openapi, default: the title's slug."
    ),
    openapi: Path | None = typer.Option(
        None, "--openapi", help="Draft the integration from this OpenAPI 3.x document (YAML or JSON)."
    ),
    name_option: str | None = typer.Option(None, "--name", help="The integration's name (same as NAME)."),
    base_url: str | None = typer.Option(
        None, "--base-url", help="The API's base URL (with --openapi: instead of the document's first server)."
    ),
    auth: str | None = typer.Option(
        None,
        "--auth",
        help="bearer, api_key, basic, oauth2 or none (default: bearer; with --openapi: from the document).",
    ),
    stdout: bool = typer.Option(False, "--stdout", help="Print the table instead of writing it."),
) -> None:
    """Write a commented tether.toml table for a new integration (from its OpenAPI document with --openapi)."""
    # Imported here: the OpenAPI stack (PyYAML, jsonschema) would slow down every other command's start.
    from tether.openapi.render import IntegrationDraft, render_header, render_integration
    from tether.openapi.security import AUTH_CHOICES, auth_template

    if name and name_option and name != name_option:
        raise fail(f"NAME ({name}) and --name ({name_option}) differ; give one")
    name = name or name_option
    if name is not None and not _NAME.match(name):
        raise fail(
            f"integration name {name!r} must be letters, digits, '-', '_' or '.', starting with a letter or digit"
        )
    if auth is not None and auth not in AUTH_CHOICES:
        raise fail(f"--auth must be one of {', '.join(AUTH_CHOICES)} (got {auth!r})")
    if base_url is not None and not _is_http_url(base_url):
        raise fail(f"--base-url must be an http:// or https:// URL with a host (got {base_url!r})")
    target = find_config((ctx.obj or {}).get("config"))
    if openapi is not None:
        draft = _from_document(openapi, target, name, base_url)
        if auth is not None:
            draft.auth = auth_template(auth, draft.name, draft.base_url)
    else:
        if name is None or base_url is None:
            raise fail(
                "give NAME and --base-url (e.g. `tether init stripe --base-url https://api.stripe.com`), or --openapi"
            )
        draft = IntegrationDraft(
            name=name,
            base_url=base_url.rstrip("/"),
            auth=auth_template(auth or "bearer", name, base_url),
            origin=[f"Written by `tether init {name}`."],
        )
    table = render_integration(draft)
    existing = _read_existing(target)
    if existing is not None and existing.strip():
        _refuse_duplicate(target, existing, draft.name)
        addition = ("\n" if existing.endswith("\n") else "\n\n") + table  # one blank line before the table
        content = existing + addition
    else:  # a new (or empty) file: the header first
        addition = content = render_header() + "\n" + table
    _check(content, draft.name, target)
    if stdout:
        sys.stdout.write(addition)
        return
    _write(target, addition, create=existing is None)
    _report(target, draft, created=existing is None)


def _from_document(openapi: Path, target: Path, name: str | None, base_url: str | None) -> IntegrationDraft:
    from tether.openapi import draft_integration, load_document

    try:
        document = load_document(openapi)
        reference = _relative(document.path, target.resolve().parent)
        return draft_integration(document, name=name, base_url=base_url, openapi=reference)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def _relative(document: Path, folder: Path) -> str:
    """The document's path as the config names it: relative to the config's folder, so the two can move
    together, unless they share nothing but the filesystem's root (then ``../../..`` would only obscure it)."""
    try:
        if Path(os.path.commonpath([document, folder])) != Path(document.anchor):
            return Path(os.path.relpath(document, folder)).as_posix()
    except ValueError:  # another drive (Windows): no relative path exists
        pass
    return document.as_posix()


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _read_existing(target: Path) -> str | None:
    try:
        return target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise fail(f"cannot read {target}: {exc.strerror or exc}") from None


def _refuse_duplicate(target: Path, existing: str, name: str) -> None:
    try:
        data = tomllib.loads(existing)
    except tomllib.TOMLDecodeError as exc:
        raise fail(
            f"{target} is not valid TOML ({exc}); fix it first (`tether check`), tether will not append to it"
        ) from None
    integrations = data.get("integrations")
    if isinstance(integrations, dict) and name in integrations:
        raise fail(
            f"{target} already has an integration named {name!r}; pick another name (NAME or --name), "
            "or edit the existing table"
        )


def _check(content: str, name: str, target: Path) -> None:
    """Fail loudly if tether's own output does not validate; secrets not set yet do not count."""
    try:
        parse_config(content, source=str(target), base_dir=target.resolve().parent, resolve_secrets=False)
    except ConfigError as exc:
        prefix = f"integrations.{name}"
        ours = [problem for problem in exc.problems if problem.path == prefix or problem.path.startswith(prefix + ".")]
        if ours or any(not problem.path for problem in exc.problems):
            details = "; ".join(str(problem) for problem in exc.problems)
            raise fail(
                f"tether drafted a table its own config parser refuses (a bug in tether, please report it): {details}"
            ) from None
        say(
            f"[yellow]![/yellow] {esc(target)} has {len(exc.problems)} problem(s) outside the new table; "
            "`tether check` lists them",
            error=True,
        )


def _write(target: Path, text: str, *, create: bool) -> None:
    try:
        if create:
            target.parent.mkdir(parents=True, exist_ok=True)
        # "x" never replaces a file that appeared meanwhile; "a" never rewrites what is there.
        with target.open("x" if create else "a", encoding="utf-8") as file:
            file.write(text)
    except OSError as exc:
        raise fail(f"cannot write {target}: {exc.strerror or exc}") from None


def _report(target: Path, draft: IntegrationDraft, *, created: bool) -> None:
    action = "created" if created else "appended to"
    operations = sum(len(group.operations) for group in draft.groups)
    listed = f", {operations} operations listed" if operations else ""
    say(f"[green]✔[/green] {action} {esc(target)}: {esc(f'[integrations.{draft.name}]')}{listed}")
    variables = sorted(set(_ENV_REF.findall(" ".join(str(value) for value in draft.auth.keys.values()))))
    if variables:
        say(f"  next: export {', '.join(variables)}; fill in the TODOs; run `tether check`")
    else:
        say("  next: fill in the TODOs; run `tether check`")
