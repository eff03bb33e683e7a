"""The sandbox as a webhook sender: realistic events from each provider, signed the way that provider signs them.

- :func:`sample_event`: a body shaped like the provider's (a Stripe event object, a GitHub ``issues`` payload,
  a Shopify order, a Slack ``event_callback``, a Standard Webhooks envelope) and the unsigned headers that come
  with it (``X-GitHub-Event``, ``X-Shopify-Topic``, ``Content-Type``…).
- :func:`signed_event`: the same plus the signature headers from :mod:`tether.webhooks.schemes`.
- :func:`send_webhook` / :func:`send_webhook_async`: sign and POST one event.
- ``POST /sandbox/webhooks`` (:func:`send_endpoint`), with a JSON body
  ``{"url", "scheme", "secret", "count": 1, "event_type": null, "duplicate": false, "timestamp": null,
  "options": {}}``: sends ``count`` events to ``url`` and answers ``{"sent", "statuses", "event_ids"}`` (plus
  ``errors`` when a send got no response; its status is then null). ``duplicate`` resends one event, same id
  and body, re-signed each time as a provider's retry is; ``timestamp`` signs a fixed time (to show a stale
  request refused); ``options`` are the ``hmac`` scheme's. It needs no credentials, so, like the rest of the
  sandbox, it is for a loopback address, not the internet: it will POST to any URL it is given.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tether.sandbox.faults import error_response
from tether.webhooks.schemes import scheme_for

__all__ = ["new_event_id", "sample_event", "send_endpoint", "send_webhook", "send_webhook_async", "signed_event"]

_TIMEOUT = 10.0
_MAX_COUNT = 100
_JSON = "application/json"
_DEFAULT_TYPES = {
    "stripe": "invoice.paid",
    "github": "issues.opened",
    "shopify": "orders/create",
    "slack": "app_mention",
    "standard": "invoice.paid",
    "svix": "invoice.paid",
    "hmac": "order.created",
}


def new_event_id(scheme: str) -> str:
    """A fresh id in the provider's own format (``evt_…``, a GUID, ``Ev…``, ``msg_…``)."""
    token = uuid.uuid4()
    if scheme in ("github", "shopify"):
        return str(token)
    if scheme == "slack":
        return "Ev" + token.hex[:10].upper()
    if scheme in ("standard", "svix"):
        return f"msg_{token.hex}"
    return f"evt_{token.hex[:24]}"


def sample_event(
    scheme: str, *, event_id: str | None = None, event_type: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """A realistic body for ``scheme`` and the unsigned headers its provider sends with it.

    Args:
        scheme: A scheme name from :func:`tether.webhooks.schemes.scheme_for`.
        event_id: The event or delivery id, in the body or a header as the provider puts it; fresh when omitted.
        event_type: The type (``invoice.paid``; ``issues.opened`` for GitHub, split into ``X-GitHub-Event`` and
            ``action``; a topic such as ``orders/create`` for Shopify); the provider's usual one when omitted.

    Returns:
        The JSON body and headers with lower-case names; the signature (and timestamp) headers are not among
        them: :meth:`Scheme.sign <tether.webhooks.schemes.Scheme.sign>` adds those.

    Raises:
        ValueError: ``scheme`` is unknown.
    """
    if scheme not in _DEFAULT_TYPES:
        raise ValueError(f"unknown webhook scheme {scheme!r}; expected one of {', '.join(_DEFAULT_TYPES)}")
    event_id = event_id or new_event_id(scheme)
    event_type = event_type or _DEFAULT_TYPES[scheme]
    now = int(time.time())
    stamp = datetime.fromtimestamp(now, tz=UTC).isoformat().replace("+00:00", "Z")
    headers = {"content-type": _JSON}
    payload: dict[str, Any]
    if scheme == "stripe":
        headers = {
            "content-type": f"{_JSON}; charset=utf-8",
            "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        payload = {
            "id": event_id,
            "object": "event",
            "api_version": "2024-06-20",
            "created": now,
            "type": event_type,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "data": {"object": _invoice(now)},
        }
    elif scheme == "github":
        event, _, action = event_type.partition(".")
        headers |= {
            "user-agent": "GitHub-Hookshot/sandbox",
            "x-github-event": event,
            "x-github-delivery": event_id,
            "x-github-hook-id": "424242",
            "x-github-hook-installation-target-type": "repository",
        }
        payload = {**({"action": action} if action else {}), **_issue(stamp)}
    elif scheme == "shopify":
        headers |= {
            "x-shopify-topic": event_type,
            "x-shopify-webhook-id": event_id,
            "x-shopify-event-id": str(uuid.uuid4()),
            "x-shopify-shop-domain": "tether-sandbox.myshopify.com",
            "x-shopify-api-version": "2024-07",
            "x-shopify-triggered-at": stamp,
        }
        payload = _order(stamp)
    elif scheme == "slack":
        headers = {"content-type": _JSON, "user-agent": "Slackbot 1.0 (+https://api.slack.com/robots)"}
        payload = _slack_callback(event_id, event_type, now)
    elif scheme in ("standard", "svix"):
        headers |= {f"{'webhook' if scheme == 'standard' else 'svix'}-id": event_id}
        payload = {"type": event_type, "timestamp": stamp, "data": _invoice(now)}
    else:
        payload = {"id": event_id, "type": event_type, "created_at": stamp, "data": _order(stamp)}
    return json.dumps(payload, separators=(",", ":")).encode(), headers


def signed_event(
    scheme: str,
    secret: str,
    *,
    event_id: str | None = None,
    event_type: str | None = None,
    body: bytes | None = None,
    timestamp: int | None = None,
    **options: Any,
) -> tuple[bytes, dict[str, str]]:
    """:func:`sample_event` (or ``body`` with its headers) signed with ``secret``: everything to POST.

    Args:
        scheme: A scheme name from :func:`tether.webhooks.schemes.scheme_for`.
        secret: The secret to sign with (``whsec_…`` or ``whsk_…`` for ``standard``/``svix``).
        event_id: The event id; fresh when omitted.
        event_type: The event type; the provider's usual one when omitted.
        body: Send these bytes instead of the sample body (the sample's headers still go along).
        timestamp: Epoch seconds to sign; now when omitted.
        options: The ``hmac`` scheme's options.

    Raises:
        ValueError: The scheme, secret or options are refused by
            :func:`~tether.webhooks.schemes.scheme_for`.
    """
    signer = scheme_for(scheme, [secret], **options)
    event_id = event_id or new_event_id(scheme)
    sample, headers = sample_event(scheme, event_id=event_id, event_type=event_type)
    content = sample if body is None else body
    return content, {**headers, **signer.sign(content, timestamp=timestamp, event_id=event_id)}


def send_webhook(
    url: str,
    scheme: str,
    secret: str,
    *,
    event_id: str | None = None,
    event_type: str | None = None,
    body: bytes | None = None,
    timestamp: int | None = None,
    client: httpx2.Client | None = None,
    **options: Any,
) -> httpx2.Response:
    """Sign an event like ``scheme``'s provider and POST it to ``url``; see :func:`signed_event` for the rest.

    Args:
        url: Where to deliver it.
        client: The client to send with; a short-lived one with a 10 s timeout when omitted.

    Raises:
        ValueError: The scheme, secret or options are refused.
        httpx2.HTTPError: The request failed without a response.
    """
    content, headers = signed_event(
        scheme, secret, event_id=event_id, event_type=event_type, body=body, timestamp=timestamp, **options
    )
    if client is not None:
        return client.post(url, content=content, headers=headers)
    with httpx2.Client(timeout=_TIMEOUT) as own:
        return own.post(url, content=content, headers=headers)


async def send_webhook_async(
    url: str,
    scheme: str,
    secret: str,
    *,
    event_id: str | None = None,
    event_type: str | None = None,
    body: bytes | None = None,
    timestamp: int | None = None,
    client: httpx2.AsyncClient | None = None,
    **options: Any,
) -> httpx2.Response:
    """The asynchronous twin of :func:`send_webhook`."""
    content, headers = signed_event(
        scheme, secret, event_id=event_id, event_type=event_type, body=body, timestamp=timestamp, **options
    )
    if client is not None:
        return await client.post(url, content=content, headers=headers)
    async with httpx2.AsyncClient(timeout=_TIMEOUT) as own:
        return await own.post(url, content=content, headers=headers)


async def send_endpoint(request: Request) -> Response:
    """``POST /sandbox/webhooks``: send ``count`` signed events to ``url`` (see the module docstring)."""
    try:
        spec = json.loads(await request.body())
    except ValueError:
        return _invalid("The body is not valid JSON.")
    problem = _check(spec)
    if problem is not None:
        return _invalid(problem)
    scheme, secret, options = spec["scheme"], spec["secret"], spec.get("options") or {}
    try:
        scheme_for(scheme, [secret], **options)
    except ValueError as exc:
        return _invalid(str(exc))
    duplicate_id = new_event_id(scheme) if spec.get("duplicate") else None
    body = sample_event(scheme, event_id=duplicate_id, event_type=spec.get("event_type"))[0] if duplicate_id else None
    statuses: list[int | None] = []
    event_ids: list[str] = []
    errors: list[str] = []
    async with httpx2.AsyncClient(timeout=_TIMEOUT) as client:
        for _ in range(spec.get("count", 1)):
            event_id = duplicate_id or new_event_id(scheme)
            event_ids.append(event_id)
            try:
                response = await send_webhook_async(
                    spec["url"],
                    scheme,
                    secret,
                    event_id=event_id,
                    event_type=spec.get("event_type"),
                    body=body,
                    timestamp=spec.get("timestamp"),
                    client=client,
                    **options,
                )
            except httpx2.HTTPError as exc:
                statuses.append(None)
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            statuses.append(response.status_code)
    answer: dict[str, Any] = {"sent": len(statuses) - len(errors), "statuses": statuses, "event_ids": event_ids}
    if errors:
        answer["errors"] = errors
    return JSONResponse(answer)


def _check(spec: Any) -> str | None:
    """What is wrong with a send request, or None."""
    if not isinstance(spec, dict):
        return "The JSON body must be an object."
    url = spec.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return "url must be an http:// or https:// URL."
    for name in ("scheme", "secret"):
        if not isinstance(spec.get(name), str):
            return f"{name} is required and must be a string."
    count = spec.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= _MAX_COUNT:
        return f"count must be an integer from 1 to {_MAX_COUNT}."
    if not isinstance(spec.get("duplicate", False), bool):
        return "duplicate must be true or false."
    if spec.get("event_type") is not None and not isinstance(spec["event_type"], str):
        return "event_type must be a string."
    timestamp = spec.get("timestamp")
    if timestamp is not None and (isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0):
        return "timestamp must be whole epoch seconds."
    if spec.get("options") is not None and not isinstance(spec["options"], dict):
        return "options must be an object."
    return None


def _invalid(message: str) -> Response:
    return error_response(400, "invalid_request_error", message)


def _invoice(now: int) -> dict[str, Any]:
    return {
        "id": f"in_{uuid.uuid4().hex[:24]}",
        "object": "invoice",
        "customer": "cus_0001",
        "amount_due": 2000,
        "amount_paid": 2000,
        "currency": "usd",
        "status": "paid",
        "created": now,
    }


def _issue(stamp: str) -> dict[str, Any]:
    sender = {"login": "octocat", "id": 1, "type": "User"}
    return {
        "issue": {
            "number": 1347,
            "title": "Found a bug",
            "state": "open",
            "user": sender,
            "body": "I'm having a problem with this.",
            "created_at": stamp,
        },
        "repository": {"id": 1296269, "name": "Hello-World", "full_name": "octocat/Hello-World", "private": False},
        "sender": sender,
    }


def _order(stamp: str) -> dict[str, Any]:
    return {
        "id": 820982911946154508,
        "email": "jon@example.com",
        "created_at": stamp,
        "currency": "USD",
        "total_price": "199.00",
        "financial_status": "paid",
        "line_items": [{"id": 866550311766439020, "title": "IPod Nano - 8GB", "quantity": 1, "price": "199.00"}],
    }


def _slack_callback(event_id: str, event_type: str, now: int) -> dict[str, Any]:
    ts = f"{now}.000100"
    return {
        "token": "sandbox-verification-token",
        "team_id": "T0SANDBOX",
        "api_app_id": "A0SANDBOX",
        "event": {
            "type": event_type,
            "user": "U0SANDBOX",
            "text": "<@U0TETHER> hello",
            "ts": ts,
            "channel": "C0SANDBOX",
        },
        "type": "event_callback",
        "event_id": event_id,
        "event_time": now,
    }
