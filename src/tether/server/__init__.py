"""``tether serve``: the service that receives webhooks (and, later, serves metrics and the dashboard)."""

from __future__ import annotations

from tether.server.app import create_app

__all__ = ["create_app"]
