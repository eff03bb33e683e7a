"""``tether docs``: write the team's integration runbook, as Markdown and optionally as one HTML page."""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from tether.cli._output import esc, fail, say
from tether.config.loader import find_config, load_config
from tether.docs import NotesError, live_state, render_html, render_markdown, skipped
from tether.docs.document import TITLE
from tether.errors import ConfigError

__all__ = ["DEFAULT_OUT", "docs"]

DEFAULT_OUT = Path("docs") / "integrations.md"
"""Where the Markdown goes by default, relative to the config file's folder (the project's root, usually)."""


def docs(
    ctx: typer.Context,
    out: Path | None = typer.Option(
        None, "--out", "-o", help="The Markdown file to write (default: docs/integrations.md next to tether.toml)."
    ),
    html: Path | None = typer.Option(
        None, "--html", help="Also write the runbook as one self-contained HTML page here."
    ),
    no_health: bool = typer.Option(
        False, "--no-health", help="Leave out live health: the output then depends on the config alone."
    ),
) -> None:
    """Write the integration runbook: per integration, what it is, auth, limits, webhooks, troubleshooting, health.

    Team notes written between the TEAM NOTES markers of the existing file are kept. Exits 1 on a config error
    or broken markers (nothing is written then); a store that cannot be read only leaves health out.
    """
    path = find_config(ctx.obj.get("config") if ctx.obj else None)
    try:
        config = load_config(path, resolve_secrets=False)  # where each secret is kept, never its value
    except ConfigError as exc:
        raise fail(exc) from None
    base_dir = path.resolve().parent
    target = out if out is not None else base_dir / DEFAULT_OUT
    try:
        previous = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        previous = None
    except OSError as exc:
        raise fail(f"cannot read {target}: {exc.strerror or exc}") from None
    live = skipped(config) if no_health else live_state(config, base_dir, now=time.time())
    try:
        markdown = render_markdown(config, source=path.name, live=live, previous=previous)
    except NotesError as exc:
        raise fail(f"{target}: team notes markers: {exc}; nothing was written") from None
    written = [_write(target, markdown)]
    if html is not None:
        written.append(_write(html, render_html(markdown, title=TITLE)))
    count = len(config.integrations)
    say(f"[green]✔[/green] wrote {esc(', '.join(written))} ({count} integration{'s' if count != 1 else ''})")
    if live.status == "unavailable":
        say(f"[yellow]![/yellow] health left out: the store {esc(live.store)} could not be read: {esc(live.reason)}")


def _write(path: Path, content: str) -> str:
    """Write ``content`` whole or not at all: a crash must not leave half a runbook (and lose team notes)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.tmp")
        partial.write_text(content, encoding="utf-8", newline="\n")
        os.replace(partial, path)
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror or exc}") from None
    return str(path)
