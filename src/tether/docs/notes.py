"""Team notes: the hand-written parts of the runbook, kept verbatim when it is regenerated.

A block is everything between a begin line and its end line, each an HTML comment on a line of its own
(Markdown viewers hide them)::

    <!-- BEGIN TEAM NOTES -->                 the whole document's block
    <!-- END TEAM NOTES -->
    <!-- BEGIN TEAM NOTES: stripe -->         integration stripe's block
    <!-- END TEAM NOTES: stripe -->

Regeneration reads the blocks from the previous file and writes each back in its place; the block of an
integration no longer in ``tether.toml`` goes to an *Orphaned team notes* section instead of being lost. A
file whose markers do not pair up is refused (:class:`NotesError`) rather than guessed at: guessing wrong
would lose somebody's notes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "DOCUMENT",
    "PLACEHOLDER",
    "NotesError",
    "TeamNotes",
    "begin_marker",
    "block",
    "end_marker",
    "read_notes",
]

DOCUMENT = ""
"""The key of the whole document's block (integration names are never empty)."""

PLACEHOLDER = "_No team notes yet: write them between these markers in the Markdown file; `tether docs` keeps them._"
"""What a new block holds; a block holding only this counts as empty."""

# The name takes the characters an integration name may have, so any marker read is one that can be written back.
_MARKER = re.compile(
    r"^\s*<!--\s*(BEGIN|END) TEAM NOTES(?:\s*:\s*([A-Za-z0-9][A-Za-z0-9_.-]*))?\s*-->\s*$", re.IGNORECASE
)


class NotesError(ValueError):
    """The previous file's team-notes markers do not pair up; nothing was written."""


def begin_marker(key: str) -> str:
    """The line that opens the block of ``key`` (:data:`DOCUMENT` or an integration name)."""
    return f"<!-- BEGIN TEAM NOTES{': ' + key if key else ''} -->"


def end_marker(key: str) -> str:
    """The line that closes the block of ``key``."""
    return f"<!-- END TEAM NOTES{': ' + key if key else ''} -->"


def block(key: str, content: str | None) -> list[str]:
    """The lines of ``key``'s block holding ``content`` (the placeholder when ``None``)."""
    return [begin_marker(key), PLACEHOLDER if content is None else content, end_marker(key)]


@dataclass(frozen=True)
class TeamNotes:
    """The blocks found in a previous file, by key, in the order they appeared."""

    blocks: dict[str, str]

    def get(self, key: str) -> str | None:
        """The content of ``key``'s block, or ``None`` when there was none."""
        return self.blocks.get(key)

    def orphans(self, keys: set[str]) -> dict[str, str]:
        """Blocks of integrations not in ``keys`` that hold more than the placeholder."""
        return {
            key: content
            for key, content in self.blocks.items()
            if key != DOCUMENT and key not in keys and content.strip() not in ("", PLACEHOLDER)
        }


def read_notes(previous: str | None) -> TeamNotes:
    """The team-notes blocks of a previous runbook (none when ``previous`` is ``None``).

    Raises:
        NotesError: a block is opened twice, nested, closed by another key's marker, or never closed, or an
            end marker has no begin; the message gives the line number.
    """
    blocks: dict[str, str] = {}
    if previous is None:
        return TeamNotes(blocks)
    open_key: str | None = None
    start = 0
    content: list[str] = []
    for number, line in enumerate(previous.splitlines(), start=1):
        match = _MARKER.match(line)
        if match is None:
            if open_key is not None:
                content.append(line)
            continue
        kind, key = match.group(1).upper(), match.group(2) or DOCUMENT
        if kind == "BEGIN":
            if open_key is not None:
                raise NotesError(
                    f"line {number}: {_what(key)} begins inside {_what(open_key)} (opened on line {start})"
                )
            if key in blocks:
                raise NotesError(f"line {number}: a second block of {_what(key)}; merge the two into one")
            open_key, start, content = key, number, []
        elif open_key is None:
            raise NotesError(f"line {number}: an end of {_what(key)} without its begin")
        elif key != open_key:
            raise NotesError(f"line {number}: {_what(open_key)} (opened on line {start}) is closed as {_what(key)}")
        else:
            blocks[key] = "\n".join(content)
            open_key = None
    if open_key is not None:
        raise NotesError(f"line {start}: {_what(open_key)} is never closed; add {end_marker(open_key)!r}")
    return TeamNotes(blocks)


def _what(key: str) -> str:
    return "the document's team notes" if key == DOCUMENT else f"the team notes of {key!r}"
