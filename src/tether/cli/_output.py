"""Console helpers shared by the commands: one place that redacts what is printed."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape

from tether.observe.redact import redact_text

__all__ = ["console", "err_console", "esc", "print_json", "say"]

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
