"""The ``webhooks`` table of an integration: how its events are verified, kept and processed (docs/webhooks.md)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import AnyHttpUrl, Field, field_validator, model_validator

from tether.config._types import Duration, _Model
from tether.config.secrets import Secret, SecretField

__all__ = ["ForwardConfig", "HmacOptions", "WebhookConfig", "parse_size"]

Scheme = Literal["stripe", "github", "shopify", "slack", "standard", "svix", "hmac"]
DEFAULT_MAX_BODY = 1024 * 1024

_SIZE = re.compile(r"^\s*(\d+)\s*(b|kb|kib|mb|mib)?\s*$", re.IGNORECASE)
_UNITS = {None: 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2}
_LOCATOR = re.compile(r"^(header|json):\S+$")


def parse_size(value: Any) -> int:
    """Bytes from an integer or a string such as ``"512KiB"`` or ``"1MB"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        size = int(match.group(1)) * _UNITS[match.group(2) and match.group(2).lower()]
    else:
        raise ValueError('expected a size in bytes, e.g. 1048576 or "1MiB" (units: B, KB, KiB, MB, MiB)')
    if size <= 0:
        raise ValueError("must be greater than 0")
    return size


class HmacOptions(_Model):
    """The generic HMAC scheme: which header holds the signature, over what, and how it is written.

    ``template`` is the signed content: ``"{body}"`` (the raw body, the default), or with the timestamp and
    event id, e.g. ``"{timestamp}.{body}"``; a template with ``{timestamp}`` needs ``timestamp_header``, one with
    ``{id}`` needs ``id_header``. ``id_header`` also names the event id the inbox deduplicates by (unless the
    integration's ``event_id`` says otherwise).
    """

    header: str
    algorithm: Literal["sha256", "sha1", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    template: str = "{body}"
    timestamp_header: str | None = None
    id_header: str | None = None

    @model_validator(mode="after")
    def _parts_need_headers(self) -> HmacOptions:
        if "{timestamp}" in self.template and self.timestamp_header is None:
            raise ValueError("'template' uses {timestamp}; name the header that carries it in 'timestamp_header'")
        if "{id}" in self.template and self.id_header is None:
            raise ValueError("'template' uses {id}; name the header that carries it in 'id_header'")
        return self


class ForwardConfig(_Model):
    """Forward each event to an internal URL, signed again with a tether secret (Standard Webhooks format).

    The receiving service verifies ``webhook-id``/``webhook-timestamp``/``webhook-signature`` with ``secret``
    (a ``whsec_`` key) like any Standard Webhooks sender's. A non-2xx answer or a timeout is a failed attempt,
    retried with the inbox's backoff.
    """

    url: AnyHttpUrl
    secret: SecretField
    timeout: Duration = 10.0
    headers: dict[str, str] = Field(default_factory=dict)


class WebhookConfig(_Model):
    """Webhooks from this API, received at ``POST /webhooks/NAME`` by ``tether serve``.

    ``secret`` (or ``secrets``, several at once while one is rotated out) verifies the signature of ``scheme``.
    Events are committed to the store before the 2xx, deduplicated by the provider's event id (or ``event_id``:
    ``"header:NAME"`` or ``"json:dotted.path"``), then handed to the ``hub.on`` handlers and/or ``forward``.
    A failed event is retried with exponential backoff from ``backoff`` up to ``max_backoff``; after
    ``attempts`` it goes to dead-letter (``tether webhooks replay --dead``). ``lease`` bounds one attempt:
    a worker that has not finished by then is presumed dead and the event is tried again. Processed events
    are deleted after ``retention``.
    """

    scheme: Scheme
    secret: SecretField | None = None
    secrets: list[SecretField] = Field(default_factory=list)
    tolerance: Duration = 300.0
    max_body: int = DEFAULT_MAX_BODY
    event_id: str | None = None
    event_type: str | None = None
    hmac: HmacOptions | None = None
    forward: ForwardConfig | None = None
    attempts: int = Field(8, ge=1, le=100)
    backoff: Duration = 10.0
    max_backoff: Duration = 3600.0
    lease: Duration = 60.0
    retention: Duration = 30 * 86400.0

    @field_validator("max_body", mode="before")
    @classmethod
    def _size(cls, value: Any) -> int:
        return parse_size(value)

    @field_validator("event_id", "event_type")
    @classmethod
    def _locator(cls, value: str | None) -> str | None:
        if value is not None and not _LOCATOR.match(value):
            raise ValueError('expected "header:NAME" or "json:dotted.path", e.g. "header:X-Event-Id" or "json:data.id"')
        return value

    @field_validator("tolerance", "backoff", "max_backoff", "lease", "retention")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> WebhookConfig:
        if self.secret is None and not self.secrets:
            raise ValueError("set 'secret' (e.g. secret = \"${WEBHOOK_SECRET}\"), or 'secrets' while rotating")
        if self.scheme == "hmac" and self.hmac is None:
            raise ValueError('scheme "hmac" needs an [hmac] table naming at least its signature header')
        if self.scheme != "hmac" and self.hmac is not None:
            raise ValueError(f'the [hmac] table applies to scheme "hmac" only, not {self.scheme!r}')
        return self

    @property
    def all_secrets(self) -> list[Secret]:
        """``secret`` first, then ``secrets``: the order signatures are tried in."""
        return ([self.secret] if self.secret is not None else []) + list(self.secrets)
