"""The *Webhooks* section of an integration's page: where events arrive, how they are verified and processed.

Which event types the application handles is decided in code (``@hub.on(name, "invoice.*")``), not in
``tether.toml``, so the page says where the type is read from and, with live state, which types arrived.
"""

from __future__ import annotations

from tether.config.webhooks import WebhookConfig
from tether.docs._text import code, duration, item, plural, url
from tether.docs.credentials import stored_in

__all__ = ["SIGNATURES", "webhook_lines"]

SIGNATURES = {
    "stripe": ("`Stripe-Signature: t=…,v1=…`, HMAC-SHA256 over `t.body`", "body `id`", "body `type`"),
    "github": ("`X-Hub-Signature-256: sha256=…`, HMAC-SHA256 over the body", "`X-GitHub-Delivery`", "`X-GitHub-Event`"),
    "shopify": (
        "`X-Shopify-Hmac-Sha256`, base64 HMAC-SHA256 over the body",
        "`X-Shopify-Webhook-Id`",
        "`X-Shopify-Topic`",
    ),
    "slack": ("`X-Slack-Signature: v0=…` over `v0:timestamp:body`", "body `event_id`", "body `event.type`"),
    "standard": (
        "Standard Webhooks: `webhook-signature` (`v1` HMAC-SHA256, `v1a` Ed25519)",
        "`webhook-id`",
        "body `type`",
    ),
    "svix": ("Svix: `svix-signature` (`v1` HMAC-SHA256, `v1a` Ed25519)", "`svix-id`", "body `type`"),
    "hmac": ("generic HMAC (below)", "a hash of the body", "not read"),
}
"""Per scheme: the signature, where the event id is and where the type is, as docs/webhooks.md tabulates them."""

_TIMESTAMPED = {"stripe", "slack", "standard", "svix"}


def webhook_lines(name: str, config: WebhookConfig | None, seen: list[tuple[str, int]] | None = None) -> list[str]:
    """The section's list items; ``seen`` is the event types that arrived recently, with their counts."""
    if config is None:
        return ["_This integration receives no webhooks (no `webhooks` table)._"]
    signature, event_id, event_type = SIGNATURES[config.scheme]
    lines = [
        item("Endpoint", f"`POST /webhooks/{name}` on `tether serve` (give the provider this URL on your host)"),
        item("Signing scheme", f"{code(config.scheme)}: {signature}"),
    ]
    if config.hmac is not None:
        options = config.hmac
        signed = f"header {code(options.header)}, {options.algorithm} in {options.encoding}"
        if options.prefix:
            signed += f" after {code(options.prefix)}"
        signed += f", over {code(options.template)}"
        if options.timestamp_header:
            signed += f", timestamp in {code(options.timestamp_header)}"
        if options.id_header:
            signed += f", delivery id in {code(options.id_header)}"
            event_id = f"the {code(options.id_header)} header"
        lines.append(item("HMAC", signed))
    secrets = [stored_in(secret) for secret in config.all_secrets]
    label = "Secret kept in" if len(secrets) == 1 else "Secrets kept in (tried in order, while one is rotated)"
    lines.append(item(label, ", ".join(secrets)))
    if config.scheme in _TIMESTAMPED or (config.hmac is not None and config.hmac.timestamp_header):
        lines.append(
            item("Replay window", f"a signed timestamp more than {code(duration(config.tolerance))} off is refused")
        )
    else:
        lines.append(item("Replay window", "none (the scheme signs no timestamp): replays are stopped by the event id"))
    lines.append(item("Largest body", f"{config.max_body:,} bytes; larger requests get a 413"))
    lines.append(
        item(
            "Events",
            f"id from {_locator(config.event_id) or event_id} (duplicates are acknowledged and dropped), type from "
            f"{_locator(config.event_type) or event_type}",
        )
    )
    handled = f'the application\'s `@hub.on("{name}", …)` handlers'
    if config.forward is not None:
        handled += (
            f", and forwarded to {url(config.forward.url)}, re-signed (Standard Webhooks) with the secret in "
            f"{stored_in(config.forward.secret)}"
        )
    lines.append(item("Processed by", handled))
    if seen:
        received = ", ".join(f"{code(kind)} × {count}" for kind, count in seen)
        lines.append(item("Types received lately", received))
    lines.append(
        item(
            "Delivery",
            f"up to {plural(config.attempts, 'attempt')}, {code(duration(config.backoff))} doubling to "
            f"{code(duration(config.max_backoff))} between them, each within {code(duration(config.lease))}; then "
            f"dead-letter: `tether webhooks list --status dead`, `tether webhooks replay --dead`; processed events "
            f"are deleted after {code(duration(config.retention))}",
        )
    )
    return lines


def _locator(value: str | None) -> str | None:
    if value is None:
        return None
    kind, _, where = value.partition(":")
    return f"header {code(where)}" if kind == "header" else f"body {code(where)}"
