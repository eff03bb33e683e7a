"""Markdown building blocks that make text from ``tether.toml`` inert: it reads as itself, never as markup.

Names are restricted to letters, digits, ``-``, ``_`` and ``.``, but owners, purposes, notes, scopes, header
values and URLs are free text. Everything taken from the config goes through :func:`text` (prose) or
:func:`code` (identifiers, paths, URLs), so ``<script>`` in a note stays the literal characters in the Markdown
viewer and becomes ``&lt;script&gt;`` in the HTML page.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tether._durations import format_duration
from tether.observe.redact import MASK, is_sensitive_name

__all__ = ["code", "duration", "item", "plural", "slug", "table", "text", "timestamp", "url"]

# Inline punctuation that starts markup somewhere (emphasis, links, raw HTML, entities, tables, strike-through,
# code), and ``#``, which starts a heading wherever a value opens a line.
_INLINE = re.compile(r"([\\`*_\[\]<>|~&#])")
# What else makes a line a block of its own when it starts it: list items, setext underlines.
_LINE_START = re.compile(r"^([-+=]|\d+(?=[.)]))")
_BACKTICKS = re.compile(r"`+")


def text(value: object) -> str:
    """``value`` as Markdown prose that renders verbatim, on one line."""
    flat = " ".join(str(value).split())
    escaped = _INLINE.sub(r"\\\1", flat)
    # A digit run is escaped after it ("1\\."), a marker before it ("\\-").
    return _LINE_START.sub(lambda m: f"{m.group(1)}\\" if m.group(1).isdigit() else f"\\{m.group(1)}", escaped)


def code(value: object, *, in_table: bool = False) -> str:
    """``value`` as an inline code span, whatever backticks it holds; ``in_table`` escapes ``|`` for a cell."""
    content = " ".join(str(value).split())
    longest = max((len(run) for run in _BACKTICKS.findall(content)), default=0)
    fence = "`" * (longest + 1)
    if content.startswith("`") or content.endswith("`"):
        content = f" {content} "
    if in_table:
        content = content.replace("|", "\\|")
    return f"{fence}{content}{fence}"


def url(value: object) -> str:
    """A URL as a code span (not a link: the page loads and links nothing outside itself), credentials masked.

    Masked by name only (user info, query parameters such as ``api_key``), never by matching registered secret
    values: the runbook must come out the same from the same config, whatever else the process has loaded.
    """
    parts = urlsplit(str(value))
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(is_sensitive_name(name) for name, _ in pairs):
        query = urlencode([(n, MASK if is_sensitive_name(n) else v) for n, v in pairs], safe="*")
    return code(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))


def item(label: str, value: str) -> str:
    """A list item with a bold label; ``label`` is tether's own words, ``value`` already Markdown."""
    return f"- **{label}:** {value}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A pipe table; cells are Markdown already (escaped with :func:`text` or ``code(..., in_table=True)``).

    Columns carry no alignment: alignment becomes ``style`` attributes in HTML, which the page's CSP forbids.
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell or " " for cell in row) + " |" for row in rows]
    return lines


def plural(count: int, word: str, many: str | None = None) -> str:
    """``"1 call"``, ``"3 calls"``."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


def duration(seconds: float) -> str:
    """Seconds as ``tether.toml`` writes them (``"1m30s"``), for a reader to match against the file."""
    return format_duration(seconds)


def timestamp(seconds: float) -> str:
    """A Unix time as ``2024-06-20 14:03:07 UTC``."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def slug(heading: str, seen: dict[str, int]) -> str:
    """The anchor GitHub gives a heading with this plain text, counting repeats in ``seen`` (``x``, ``x-1``…)."""
    base = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
    count = seen.get(base, 0)
    seen[base] = count + 1
    return base if count == 0 else f"{base}-{count}"
