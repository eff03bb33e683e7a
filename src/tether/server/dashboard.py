"""The dashboard of ``tether serve``: ``GET /`` (the page) and ``GET /api/overview`` (what it shows).

The page (``dashboard.html``, package data) is one self-contained document: its CSS and script are inline, it
loads nothing from elsewhere (on-call networks may be closed), draws its charts as SVG itself and polls
``/api/overview`` every few seconds. It inserts data into the page as text only, and a Content-Security-Policy
that allows exactly its own inline script and style (by hash) backs that up: an integration name or an error
message that looks like markup stays text.

``/api/overview`` is :func:`tether.observe.health.overview` as JSON, so the page shows only what that returns,
which never includes a secret's value. Both routes sit behind the :class:`~tether.server.admin.AdminGuard`.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import importlib.resources
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tether.hub import Hub
from tether.observe.health import overview
from tether.observe.log import logger
from tether.server.admin import AdminGuard

__all__ = ["MAX_WINDOW", "MIN_WINDOW", "dashboard_routes"]

MIN_WINDOW = 60.0
MAX_WINDOW = 7 * 86400.0
DEFAULT_WINDOW = 3600.0

Alerts = Callable[[], Iterable[Mapping[str, Any]]]

_NO_STORE = {"Cache-Control": "no-store"}


def dashboard_routes(hub: Hub, guard: AdminGuard, *, alerts: Alerts | None = None) -> list[Route]:
    """The dashboard's routes for ``hub``, each behind ``guard``.

    Args:
        hub: The integrations whose health to show (read from its store).
        guard: Who may see them.
        alerts: Returns the open incidents (each with ``integration``) to show with their integration.
    """

    async def page(request: Request) -> Response:
        text, policy = _page()
        headers = {
            **_NO_STORE,
            "Content-Security-Policy": policy,
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
        }
        return HTMLResponse(text, headers=headers)

    async def api_overview(request: Request) -> Response:
        try:
            window = _window(request.query_params.get("window"))
        except ValueError as exc:
            return JSONResponse({"error": "bad_request", "detail": str(exc)}, 400, _NO_STORE)
        incidents = list(alerts()) if alerts is not None else []
        try:
            result = await asyncio.to_thread(overview, hub, window=window, alerts=incidents)
        except Exception as exc:
            # The store's message may name its host or user; the log has it, the page gets the kind of failure.
            logger.warning("tether: the dashboard cannot read the store: %s: %s", type(exc).__name__, exc)
            detail = f"the store did not answer ({type(exc).__name__}); see the server's log"
            return JSONResponse({"error": "unavailable", "detail": detail}, 503, _NO_STORE)
        return JSONResponse(result.to_dict(), headers=_NO_STORE)

    return [
        Route("/", guard.protect(page), methods=["GET"], name="dashboard"),
        Route("/api/overview", guard.protect(api_overview), methods=["GET"], name="dashboard-overview"),
    ]


def _window(text: str | None) -> float:
    """The ``window`` query parameter in seconds, clamped to [MIN_WINDOW, MAX_WINDOW]."""
    if text is None or text == "":
        return DEFAULT_WINDOW
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError("window must be a number of seconds, e.g. window=3600") from None
    if math.isnan(seconds):
        raise ValueError("window must be a number of seconds, e.g. window=3600")
    return min(MAX_WINDOW, max(MIN_WINDOW, seconds))


@functools.cache
def _page() -> tuple[str, str]:
    """The page, and a Content-Security-Policy allowing its inline script and style and nothing else."""
    text = importlib.resources.files("tether.server").joinpath("dashboard.html").read_text("utf-8")
    scripts = " ".join(_hashes(text, "script"))
    styles = " ".join(_hashes(text, "style"))
    policy = (
        f"default-src 'none'; script-src {scripts}; style-src {styles}; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return text, policy


def _hashes(text: str, tag: str) -> list[str]:
    found = []
    for body in re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.DOTALL):
        digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode("ascii")
        found.append(f"'sha256-{digest}'")
    return found
