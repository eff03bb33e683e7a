"""The sandbox as a webhook sender, checked by a real receiver on loopback that verifies with tether's schemes.

The receiver is a small Starlette app served by uvicorn in a thread (``running_sandbox(app=...)``): it answers
200 with the event id and type it read once the signature verifies, and 401 with the reason otherwise.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tether.sandbox import SandboxServer, running_sandbox
from tether.sandbox.webhooks import new_event_id, sample_event, send_webhook, send_webhook_async, signed_event
from tether.webhooks.schemes import Scheme, VerificationError, generate_keypair, generate_secret, scheme_for

WHSEC = generate_secret()
WHSK, WHPK = generate_keypair()
HMAC_OPTIONS = {
    "header": "X-Sandbox-Signature",
    "prefix": "sha256=",
    "template": "{timestamp}.{body}",
    "timestamp_header": "X-Sandbox-Timestamp",
}
# key: (scheme, the sender's secret, the receiver's secret, hmac options, the default event type)
SENDERS: dict[str, tuple[str, str, str, dict[str, Any], str]] = {
    "stripe": ("stripe", "whsec_sandbox_stripe", "whsec_sandbox_stripe", {}, "invoice.paid"),
    "github": ("github", "gh-sandbox-secret", "gh-sandbox-secret", {}, "issues.opened"),
    "shopify": ("shopify", "shpss_sandbox", "shpss_sandbox", {}, "orders/create"),
    "slack": ("slack", "8f742231b10e8888abcd99yyyzzz85a5", "8f742231b10e8888abcd99yyyzzz85a5", {}, "app_mention"),
    "standard": ("standard", WHSEC, WHSEC, {}, "invoice.paid"),
    "svix": ("svix", WHSEC, WHSEC, {}, "invoice.paid"),
    "standard-ed25519": ("standard", WHSK, WHPK, {}, "invoice.paid"),
    "hmac": ("hmac", "hmac-sandbox-secret", "hmac-sandbox-secret", HMAC_OPTIONS, "order.created"),
}


class Receiver:
    """Verifies ``POST /hooks/{key}`` with the scheme ``SENDERS[key]`` describes and remembers what arrived."""

    def __init__(self) -> None:
        self.schemes: dict[str, Scheme] = {
            key: scheme_for(name, [secret], **options) for key, (name, _, secret, options, _) in SENDERS.items()
        }
        self.received: list[tuple[str, str | None, bytes]] = []
        self.app = Starlette(routes=[Route("/hooks/{key}", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        key = request.path_params["key"]
        scheme, body = self.schemes[key], await request.body()
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            scheme.verify(body, headers)
        except VerificationError as exc:
            return JSONResponse({"reason": exc.reason}, 401)
        payload = json.loads(body)
        event_id = scheme.event_id(headers, payload)
        self.received.append((key, event_id, body))
        return JSONResponse({"event_id": event_id, "event_type": scheme.event_type(headers, payload)})


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    """A verifying receiver on a free loopback port, and its base URL."""
    hooks = Receiver()
    with running_sandbox(app=hooks.app) as server:
        yield hooks, server.url


# --- sample events ----------------------------------------------------------------------------------------------


def test_a_stripe_sample_is_an_event_object_with_the_id_and_type_asked_for() -> None:
    body, headers = sample_event("stripe", event_id="evt_test_1", event_type="customer.created")
    event = json.loads(body)
    assert (event["id"], event["object"], event["type"]) == ("evt_test_1", "event", "customer.created")
    assert event["data"]["object"]["object"] == "invoice"
    assert headers["content-type"].startswith("application/json")


def test_a_github_sample_splits_the_type_into_event_header_and_action() -> None:
    body, headers = sample_event("github", event_id="d-1", event_type="pull_request.closed")
    assert (headers["x-github-event"], headers["x-github-delivery"]) == ("pull_request", "d-1")
    assert json.loads(body)["action"] == "closed"
    push, push_headers = sample_event("github", event_type="push")
    assert "action" not in json.loads(push)
    assert push_headers["x-github-event"] == "push"


def test_shopify_slack_and_standard_samples_carry_their_ids_where_the_provider_does() -> None:
    _, shopify = sample_event("shopify", event_id="w-1")
    assert (shopify["x-shopify-webhook-id"], shopify["x-shopify-topic"]) == ("w-1", "orders/create")
    slack, _ = sample_event("slack", event_id="Ev123")
    assert json.loads(slack)["event_id"] == "Ev123"
    assert json.loads(slack)["type"] == "event_callback"
    standard, headers = sample_event("standard", event_id="msg_1", event_type="user.created")
    assert headers["webhook-id"] == "msg_1"
    assert set(json.loads(standard)) == {"type", "timestamp", "data"}


@pytest.mark.parametrize(
    ("scheme", "prefix"),
    [("stripe", "evt_"), ("slack", "Ev"), ("standard", "msg_"), ("svix", "msg_"), ("hmac", "evt_")],
)
def test_fresh_event_ids_follow_the_providers_formats(scheme: str, prefix: str) -> None:
    assert new_event_id(scheme).startswith(prefix)
    assert new_event_id(scheme) != new_event_id(scheme)


def test_an_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown webhook scheme 'paypal'"):
        sample_event("paypal")
    with pytest.raises(ValueError, match="unknown webhook scheme"):
        signed_event("paypal", "secret")


# --- send_webhook to a real receiver ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", SENDERS)
def test_each_schemes_sent_event_verifies_at_a_real_receiver(receiver: tuple[Receiver, str], key: str) -> None:
    _, url = receiver
    name, secret, _, options, event_type = SENDERS[key]
    event_id = new_event_id(name)
    response = send_webhook(f"{url}/hooks/{key}", name, secret, event_id=event_id, **options)
    assert response.status_code == 200, response.text
    assert response.json() == {"event_id": event_id, "event_type": event_type}


async def test_the_async_twin_sends_the_same_signed_event(receiver: tuple[Receiver, str]) -> None:
    _, url = receiver
    async with httpx2.AsyncClient() as client:
        response = await send_webhook_async(
            f"{url}/hooks/github", "github", SENDERS["github"][1], event_type="issues.closed", client=client
        )
    assert response.status_code == 200
    assert response.json()["event_type"] == "issues.closed"
    own_client = await send_webhook_async(f"{url}/hooks/svix", "svix", WHSEC, event_id="msg_async")
    assert own_client.json() == {"event_id": "msg_async", "event_type": "invoice.paid"}


def test_a_custom_body_is_signed_as_given(receiver: tuple[Receiver, str]) -> None:
    hooks, url = receiver
    body = b'{"id":"evt_custom","type":"charge.refunded"}'
    with httpx2.Client() as client:
        response = send_webhook(f"{url}/hooks/stripe", "stripe", SENDERS["stripe"][1], body=body, client=client)
    assert response.json() == {"event_id": "evt_custom", "event_type": "charge.refunded"}
    assert hooks.received[-1][2] == body


def test_a_wrong_secret_and_a_stale_timestamp_are_refused_by_the_receiver(receiver: tuple[Receiver, str]) -> None:
    _, url = receiver
    wrong = send_webhook(f"{url}/hooks/slack", "slack", "not-the-secret")
    assert (wrong.status_code, wrong.json()) == (401, {"reason": "no signature matched"})
    stale = send_webhook(f"{url}/hooks/standard", "standard", WHSEC, timestamp=int(time.time()) - 3600)
    assert (stale.status_code, stale.json()) == (401, {"reason": "timestamp outside the 300 s tolerance"})


# --- POST /sandbox/webhooks -------------------------------------------------------------------------------------


def test_the_sandbox_endpoint_sends_count_events_with_distinct_ids_and_needs_no_credentials(
    sandbox: SandboxServer, receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    spec = {"url": f"{url}/hooks/stripe", "scheme": "stripe", "secret": SENDERS["stripe"][1], "count": 3}
    answer = httpx2.post(f"{sandbox.url}/sandbox/webhooks", json=spec).json()
    assert (answer["sent"], answer["statuses"]) == (3, [200, 200, 200])
    assert len(set(answer["event_ids"])) == 3
    assert [event_id for key, event_id, _ in hooks.received[-3:]] == answer["event_ids"]


def test_duplicate_resends_one_event_with_the_same_id_and_body(
    sandbox: SandboxServer, receiver: tuple[Receiver, str]
) -> None:
    hooks, url = receiver
    spec = {
        "url": f"{url}/hooks/shopify",
        "scheme": "shopify",
        "secret": SENDERS["shopify"][1],
        "count": 2,
        "duplicate": True,
        "event_type": "orders/paid",
    }
    answer = httpx2.post(f"{sandbox.url}/sandbox/webhooks", json=spec).json()
    assert answer["statuses"] == [200, 200]
    assert answer["event_ids"][0] == answer["event_ids"][1]
    (_, first_id, first_body), (_, second_id, second_body) = hooks.received[-2:]
    assert (first_id, first_body) == (second_id, second_body)


def test_the_endpoint_passes_hmac_options_and_a_fixed_timestamp(
    sandbox: SandboxServer, receiver: tuple[Receiver, str]
) -> None:
    _, url = receiver
    spec = {"url": f"{url}/hooks/hmac", "scheme": "hmac", "secret": SENDERS["hmac"][1], "options": HMAC_OPTIONS}
    assert httpx2.post(f"{sandbox.url}/sandbox/webhooks", json=spec).json()["statuses"] == [200]
    stale = {**spec, "timestamp": int(time.time()) - 3600}
    assert httpx2.post(f"{sandbox.url}/sandbox/webhooks", json=stale).json()["statuses"] == [401]


def test_sends_do_not_block_the_sandboxs_event_loop(sandbox: SandboxServer) -> None:
    # The sandbox posts to itself: a blocking send would hold the loop that has to answer it, until the timeout.
    spec = {"url": f"{sandbox.url}/health", "scheme": "github", "secret": "s", "count": 2}
    started = time.monotonic()
    answer = httpx2.post(f"{sandbox.url}/sandbox/webhooks", json=spec, timeout=30).json()
    assert answer["statuses"] == [405, 405]
    assert time.monotonic() - started < 5


def test_an_unreachable_url_is_reported_per_send(sandbox: SandboxServer) -> None:
    spec = {"url": "http://127.0.0.1:9/hooks", "scheme": "github", "secret": "s"}
    answer = httpx2.post(f"{sandbox.url}/sandbox/webhooks", json=spec).json()
    assert (answer["sent"], answer["statuses"]) == (0, [None])
    assert answer["errors"][0].startswith("ConnectError")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([], "must be an object"),
        ({"scheme": "github", "secret": "s"}, "url must be"),
        ({"url": "ftp://x", "scheme": "github", "secret": "s"}, "url must be"),
        ({"url": "http://x", "secret": "s"}, "scheme is required"),
        ({"url": "http://x", "scheme": "github"}, "secret is required"),
        ({"url": "http://x", "scheme": "github", "secret": "s", "count": 0}, "count must be"),
        ({"url": "http://x", "scheme": "github", "secret": "s", "count": True}, "count must be"),
        ({"url": "http://x", "scheme": "github", "secret": "s", "duplicate": "yes"}, "duplicate must be"),
        ({"url": "http://x", "scheme": "github", "secret": "s", "event_type": 3}, "event_type must be"),
        ({"url": "http://x", "scheme": "github", "secret": "s", "timestamp": -1}, "timestamp must be"),
        ({"url": "http://x", "scheme": "github", "secret": "s", "options": []}, "options must be"),
        ({"url": "http://x", "scheme": "paypal", "secret": "s"}, "unknown webhook scheme"),
        ({"url": "http://x", "scheme": "standard", "secret": "whsec_???"}, "not base64"),
        ({"url": "http://x", "scheme": "hmac", "secret": "s"}, "needs 'header'"),
    ],
)
def test_the_endpoint_refuses_a_bad_request_with_a_400(sandbox: SandboxServer, spec: Any, message: str) -> None:
    response = httpx2.post(f"{sandbox.url}/sandbox/webhooks", json=spec)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_a_body_that_is_not_json_is_a_400(sandbox: SandboxServer) -> None:
    response = httpx2.post(f"{sandbox.url}/sandbox/webhooks", content=b"{nope")
    assert (response.status_code, response.json()["error"]["message"]) == (400, "The body is not valid JSON.")
