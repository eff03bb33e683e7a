"""``tether docs``: the team's integration runbook, generated from ``tether.toml`` and the store's live state.

One Markdown document (:func:`render_markdown`) and the same as a self-contained HTML page
(:func:`render_html`). Per integration: purpose and owner, base URL and version, authentication (where each
credential is kept, never its value), limits, webhooks, browser access, alerts, known limitations, the
troubleshooting runbook of the seven classic failures, and current health (:func:`live_state`). The team's
hand-written notes live between markers and survive regeneration (:mod:`tether.docs.notes`).

The modules, one part of the page each: :mod:`~tether.docs.credentials`, :mod:`~tether.docs.reference`,
:mod:`~tether.docs.webhooks`, :mod:`~tether.docs.troubleshooting`, :mod:`~tether.docs.live` and
:mod:`~tether.docs.health`; :mod:`~tether.docs.document` puts them together and :mod:`~tether.docs.html`
renders the page.
"""

from tether.docs.document import render_markdown
from tether.docs.html import render_html
from tether.docs.live import LiveState, live_state, skipped
from tether.docs.notes import NotesError

__all__ = ["LiveState", "NotesError", "live_state", "render_html", "render_markdown", "skipped"]
