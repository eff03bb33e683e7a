"""Webhook signature schemes: verify what a provider sends, and sign the same way for the sandbox and forwarding.

:func:`scheme_for` builds a :class:`Scheme` from a name and its secrets:

============  =========================================================  =====================================
Name          Signature                                                  Event id / type
============  =========================================================  =====================================
``stripe``    ``Stripe-Signature: t=TS,v1=HEX`` over ``TS.BODY``         body ``id`` / ``type``
``github``    ``X-Hub-Signature-256: sha256=HEX`` over ``BODY``          ``X-GitHub-Delivery`` / ``-Event``
``shopify``   ``X-Shopify-Hmac-Sha256: BASE64`` over ``BODY``            ``X-Shopify-Webhook-Id`` / ``-Topic``
``slack``     ``X-Slack-Signature: v0=HEX`` over ``v0:TS:BODY``          body ``event_id`` / ``event.type``
``standard``  ``webhook-signature: v1,B64 v1a,B64`` over ``ID.TS.BODY``  ``webhook-id`` / body ``type``
``svix``      the same with ``svix-*`` headers                           ``svix-id`` / body ``type``
``hmac``      configurable: header, digest, encoding, signed template    configurable
============  =========================================================  =====================================

Every scheme verifies the raw body bytes, compares in constant time, tries every secret (so a secret can be
rotated by listing the new one next to the old), and raises only :class:`VerificationError`, whose ``reason``
is safe to log and to return in a 401. Schemes that sign a timestamp refuse one further than ``tolerance``
seconds from now in either direction. GitHub and Shopify sign no timestamp: a captured request verifies
forever, so replays are stopped only by deduplicating on the delivery id. A body that is not UTF-8 is no
reason to refuse a request by itself: the signature covers the bytes, whatever they encode.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from typing import Any

from tether.webhooks._base import (
    Headers,
    KeyedMacs,
    Scheme,
    VerificationError,
    check_fresh,
    decode_base64,
    decode_hex,
    header_id,
    json_field,
    parse_timestamp,
    require_header,
    signature_matches,
    timestamp_text,
)
from tether.webhooks._hmac import HmacScheme
from tether.webhooks._standard import StandardWebhooksScheme, SvixScheme, generate_keypair, generate_secret

__all__ = [
    "GitHubScheme",
    "Headers",
    "HmacScheme",
    "Scheme",
    "ShopifyScheme",
    "SlackScheme",
    "StandardWebhooksScheme",
    "StripeScheme",
    "SvixScheme",
    "VerificationError",
    "generate_keypair",
    "generate_secret",
    "scheme_for",
]


class _RawKeyScheme(Scheme):
    """A scheme keyed by the secret's UTF-8 bytes, exactly as the provider shows it."""

    def __init__(self, secrets: Sequence[str], *, tolerance: float = 300.0) -> None:
        super().__init__(secrets, tolerance=tolerance)
        self._macs = KeyedMacs([secret.encode() for secret in self._secrets])


class StripeScheme(_RawKeyScheme):
    """Stripe: ``Stripe-Signature: t=TS,v1=HEX[,v1=HEX…]``, an HMAC-SHA256 of ``TS.BODY``.

    The key is the whole ``whsec_…`` string as Stripe shows it (it is not base64-decoded). Stripe sends
    several ``v1`` entries while an endpoint's secret is being rolled; any entry matching any secret passes.
    ``v0`` entries (a legacy test-mode scheme) and unknown keys are ignored. The event id and type are the
    ``id`` and ``type`` of the event object in the body.
    """

    name = "stripe"

    def verify(self, body: bytes, headers: Headers, *, now: float | None = None) -> None:
        value = require_header(headers, "stripe-signature", "Stripe-Signature")
        timestamp: str | None = None
        received: list[bytes | None] = []
        for item in value.split(","):
            key, _, text = item.strip().partition("=")
            if key == "t":
                if timestamp is not None:
                    raise VerificationError("the Stripe-Signature header has more than one timestamp (t=)")
                timestamp = text
            elif key == "v1":
                received.append(decode_hex(text))
        if timestamp is None:
            raise VerificationError("the Stripe-Signature header has no timestamp (t=)")
        if not received:
            raise VerificationError("the Stripe-Signature header has no v1 signature")
        seconds = parse_timestamp(timestamp, "the Stripe-Signature timestamp")
        if not signature_matches(self._macs.digests(timestamp.encode(), b".", body), received):
            raise VerificationError("no signature matched")
        check_fresh(seconds, now, self.tolerance)

    def sign(self, body: bytes, *, timestamp: int | None = None, event_id: str | None = None) -> dict[str, str]:
        stamp = timestamp_text(timestamp)
        signature = self._macs.first(stamp.encode(), b".", body).hex()
        return {"stripe-signature": f"t={stamp},v1={signature}"}


class GitHubScheme(_RawKeyScheme):
    """GitHub: ``X-Hub-Signature-256: sha256=HEX``, an HMAC-SHA256 of the body. No timestamp is signed.

    The event id is the ``X-GitHub-Delivery`` header (a GUID; a redelivery keeps it). The event type is the
    ``X-GitHub-Event`` header, followed by ``.ACTION`` when the payload has a string ``action``:
    ``issues.opened``, ``pull_request.closed``, or plain ``push``. The legacy SHA-1 ``X-Hub-Signature``
    header is ignored.
    """

    name = "github"

    def verify(self, body: bytes, headers: Headers, *, now: float | None = None) -> None:
        value = require_header(headers, "x-hub-signature-256", "X-Hub-Signature-256")
        algorithm, _, text = value.partition("=")
        candidate = decode_hex(text)
        if algorithm != "sha256" or candidate is None:
            raise VerificationError("the X-Hub-Signature-256 header is not sha256=<hex>")
        if not signature_matches(self._macs.digests(body), [candidate]):
            raise VerificationError("no signature matched")

    def sign(self, body: bytes, *, timestamp: int | None = None, event_id: str | None = None) -> dict[str, str]:
        delivery = str(uuid.uuid4()) if event_id is None else header_id(event_id)
        return {"x-hub-signature-256": f"sha256={self._macs.first(body).hex()}", "x-github-delivery": delivery}

    def event_id(self, headers: Headers, payload: Any) -> str | None:
        return headers.get("x-github-delivery")

    def event_type(self, headers: Headers, payload: Any) -> str | None:
        event = headers.get("x-github-event")
        if event is None:
            return None
        action = json_field(payload, "action")
        return event if action is None else f"{event}.{action}"


class ShopifyScheme(_RawKeyScheme):
    """Shopify: ``X-Shopify-Hmac-Sha256: BASE64``, an HMAC-SHA256 of the body, keyed by the app's secret.

    Shopify signs no timestamp, so a captured request verifies forever: replay protection rests entirely on
    deduplicating ``X-Shopify-Webhook-Id`` (``X-Shopify-Event-Id`` when that is absent). The event type is the
    ``X-Shopify-Topic`` header, e.g. ``orders/create``.
    """

    name = "shopify"

    def verify(self, body: bytes, headers: Headers, *, now: float | None = None) -> None:
        value = require_header(headers, "x-shopify-hmac-sha256", "X-Shopify-Hmac-Sha256")
        candidate = decode_base64(value)
        if candidate is None:
            raise VerificationError("the X-Shopify-Hmac-Sha256 header is not base64")
        if not signature_matches(self._macs.digests(body), [candidate]):
            raise VerificationError("no signature matched")

    def sign(self, body: bytes, *, timestamp: int | None = None, event_id: str | None = None) -> dict[str, str]:
        webhook_id = str(uuid.uuid4()) if event_id is None else header_id(event_id)
        signature = base64.b64encode(self._macs.first(body)).decode()
        return {"x-shopify-hmac-sha256": signature, "x-shopify-webhook-id": webhook_id}

    def event_id(self, headers: Headers, payload: Any) -> str | None:
        return headers.get("x-shopify-webhook-id") or headers.get("x-shopify-event-id")

    def event_type(self, headers: Headers, payload: Any) -> str | None:
        return headers.get("x-shopify-topic")


class SlackScheme(_RawKeyScheme):
    """Slack: ``X-Slack-Signature: v0=HEX``, an HMAC-SHA256 of ``v0:TS:BODY`` with TS from
    ``X-Slack-Request-Timestamp``; Slack recommends refusing timestamps more than 5 minutes off.

    The event id is the Events API's ``event_id``; the type is the inner ``event.type`` (``app_mention``,
    ``message``…) or else the outer ``type`` (``url_verification``). Slash commands and interactions carry
    neither: configure ``event_id`` explicitly or rely on the signature alone.
    """

    name = "slack"

    def verify(self, body: bytes, headers: Headers, *, now: float | None = None) -> None:
        value = require_header(headers, "x-slack-signature", "X-Slack-Signature")
        timestamp = require_header(headers, "x-slack-request-timestamp", "X-Slack-Request-Timestamp")
        seconds = parse_timestamp(timestamp, "X-Slack-Request-Timestamp")
        version, _, text = value.partition("=")
        candidate = decode_hex(text)
        if version != "v0" or candidate is None:
            raise VerificationError("the X-Slack-Signature header is not v0=<hex>")
        if not signature_matches(self._macs.digests(b"v0:", timestamp.encode(), b":", body), [candidate]):
            raise VerificationError("no signature matched")
        check_fresh(seconds, now, self.tolerance)

    def sign(self, body: bytes, *, timestamp: int | None = None, event_id: str | None = None) -> dict[str, str]:
        stamp = timestamp_text(timestamp)
        signature = self._macs.first(b"v0:", stamp.encode(), b":", body).hex()
        return {"x-slack-request-timestamp": stamp, "x-slack-signature": f"v0={signature}"}

    def event_id(self, headers: Headers, payload: Any) -> str | None:
        return json_field(payload, "event_id")

    def event_type(self, headers: Headers, payload: Any) -> str | None:
        return json_field(payload, "event", "type") or json_field(payload, "type")

    def handshake(self, payload: Any) -> dict[str, Any] | None:
        """Slack's ``url_verification``: it expects its ``challenge`` back."""
        if json_field(payload, "type") != "url_verification":
            return None
        return {"challenge": payload.get("challenge")}


_SCHEMES: dict[str, type[Scheme]] = {
    scheme.name: scheme
    for scheme in (
        StripeScheme,
        GitHubScheme,
        ShopifyScheme,
        SlackScheme,
        StandardWebhooksScheme,
        SvixScheme,
        HmacScheme,
    )
}


def scheme_for(name: str, secrets: Sequence[str], *, tolerance: float = 300.0, **options: Any) -> Scheme:
    """Build the scheme called ``name``, keyed with ``secrets``.

    Args:
        name: ``stripe``, ``github``, ``shopify``, ``slack``, ``standard``, ``svix`` or ``hmac``.
        secrets: One or more secrets, all accepted when verifying; :meth:`Scheme.sign` uses the first.
            ``standard``/``svix`` take ``whsec_`` HMAC secrets, ``whpk_`` Ed25519 public keys (verify only)
            and ``whsk_`` Ed25519 secret keys; every other scheme uses the secret's text as the HMAC key.
        tolerance: Seconds a signed timestamp may be off, either way (default 300; above 3600 warns).
        options: Only for ``hmac``: ``header``, ``algorithm``, ``encoding``, ``prefix``, ``template``,
            ``timestamp_header`` and ``id_header`` (see :class:`HmacScheme`).

    Raises:
        ValueError: The name is unknown; there is no secret, or one is empty, padded with whitespace or
            malformed (a ``whsec_`` secret that is not base64, say); or the options do not fit the scheme.
            The message names the secret by position, never by value.
    """
    scheme = _SCHEMES.get(name)
    if scheme is None:
        raise ValueError(f"unknown webhook scheme {name!r}; expected one of {', '.join(_SCHEMES)}")
    if scheme is HmacScheme:
        unknown = set(options) - HmacScheme.OPTIONS
        if unknown:
            allowed = ", ".join(sorted(HmacScheme.OPTIONS))
            raise ValueError(f"unknown hmac option(s) {', '.join(sorted(unknown))}; expected some of {allowed}")
    elif options:
        raise ValueError(f"scheme {name!r} takes no options (got {', '.join(sorted(options))}); they are for 'hmac'")
    return scheme(secrets, tolerance=tolerance, **options)
