"""Reading a webhook's body: JSON, or a form whose ``payload`` field may hold JSON (Slack)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

__all__ = ["parse_body"]


def parse_body(body: bytes, content_type: str) -> Any:
    """The body parsed by its media type: a form for ``application/x-www-form-urlencoded``, else JSON.

    Raises:
        ValueError: not UTF-8, not JSON, or not a form.
    """
    media = content_type.partition(";")[0].strip().lower()
    try:
        text = body.decode("utf-8")
        if media == "application/x-www-form-urlencoded":
            form = dict(parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text)))
            return json.loads(form["payload"]) if "payload" in form else form
        return json.loads(text)
    except RecursionError as exc:  # absurdly nested JSON
        raise ValueError("the body is nested too deeply") from exc
