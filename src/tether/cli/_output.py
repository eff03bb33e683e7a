"""Console helpers shared by the commands: one place that redacts what is printed."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from tether.errors import ConfigError
from tether.hub import Hub
from tether.observe.redact import redact_text

__all__ = ["console", "err_console", "esc", "fail", "open_hub", "print_json", "say"]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def esc(value: object) -> str:
    """``value`` as text that rich prints verbatim: API bodies and messages may contain ``[brackets]``."""
    return escape(str(value))


def say(text: str, *, error: bool = False) -> None:
    """Print rich markup, with secrets masked."""
    (err_console if error else console).print(redact_text(text))


def print_json(data: Any) -> None:
    """Machine-readable output for ``--json``: plain JSON on stdout, secrets masked."""
    print(redact_text(json.dumps(data, indent=2, default=str)))


def fail(message: object, hint: str | None = None) -> typer.Exit:
    """Print ``message`` (and ``hint``) as an error on stderr; the ``typer.Exit(1)`` for the caller to raise."""
    say(f"[red]✘[/red] {esc(message)}", error=True)
    if hint:
        say(f"  hint: {esc(hint)}", error=True)
    return typer.Exit(1)


def open_hub(ctx: typer.Context, names: Iterable[str] = ()) -> Hub:
    """The hub of the global ``--config``, each of ``names`` checked to be configured.

    Raises:
        typer.Exit: the config is invalid or a name is not an integration (the error is printed first).
    """
    try:
        hub = Hub.from_config(ctx.obj.get("config") if ctx.obj else None)
    except ConfigError as exc:
        raise fail(exc) from None
    for name in names:
        try:
            hub.integration(name)
        except KeyError as exc:
            hub.close()
            raise fail(exc.args[0]) from None
    return hub


@contextlib.contextmanager
def reading_store(ctx: typer.Context, names: Iterable[str] = ()) -> Iterator[Hub]:
    """:func:`open_hub` for a command that reads the store: a store that fails (down, unreachable, refusing the
    role) becomes a message with a hint and exit code 1, not a traceback."""
    with open_hub(ctx, names) as hub:
        try:
            yield hub
        except store_errors() as exc:
            raise fail(f"the store failed: {exc}", "check `store` in tether.toml and that the store is up") from None


def store_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a store raises: sqlite3's, and psycopg's once a PostgreSQL store has been opened."""
    psycopg = sys.modules.get("psycopg")  # imported with the first PostgreSQL store, never before
    return (sqlite3.Error, *((psycopg.Error,) if psycopg else ()))


def local_time(timestamp: float | None) -> str:
    """``timestamp`` (Unix seconds) in this machine's time zone, to the second; ``-`` for none."""
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M:%S")
