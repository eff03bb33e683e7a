"""The webhook service on a real loopback socket: the receiver's order of checks, handlers, forwarding, retries,
dead-letter, graceful shutdown, and several instances sharing one PostgreSQL inbox."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2

import tether
from store_fixtures import PostgresSpace
from tether.server import create_app
from tether.webhooks import WebhookEvent
from tether.webhooks.schemes import scheme_for
from webhook_fixtures import GITHUB_SECRET, SECRET, STRIPE_SECRET, Recorder, make_hub, serving

STRIPE = 'scheme = "stripe"\nsecret = "${STRIPE_WEBHOOK_SECRET}"'


def wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def stripe_event(event_id: str, event_type: str = "invoice.paid") -> bytes:
    return json.dumps({"id": event_id, "object": "event", "type": event_type, "data": {"object": {}}}).encode()


def post_stripe(url: str, body: bytes, *, secret: str = STRIPE_SECRET, **headers: str) -> httpx2.Response:
    signed = scheme_for("stripe", [secret]).sign(body, timestamp=int(time.time()))
    return httpx2.post(
        f"{url}/webhooks/stripe", content=body, headers={"content-type": "application/json", **signed, **headers}
    )


@contextlib.contextmanager
def service(hub: tether.Hub, **options: object) -> Iterator[str]:
    with serving(create_app(hub, **options)) as url:  # type: ignore[arg-type]
        yield url


# --- the receiver -------------------------------------------------------------------------------------------


HMAC_WITH_ID = """scheme = "hmac"
secret = "${STRIPE_WEBHOOK_SECRET}"
[integrations.acme.webhooks.hmac]
header = "X-Acme-Signature"
template = "{id}.{timestamp}.{body}"
timestamp_header = "X-Acme-Timestamp"
id_header = "X-Acme-Delivery"
"""


def test_a_generic_hmac_scheme_signs_and_deduplicates_by_the_delivery_header_its_config_names(
    tmp_path: Path,
) -> None:
    hub = make_hub(tmp_path, HMAC_WITH_ID, name="acme")
    scheme = scheme_for(
        "hmac",
        [STRIPE_SECRET],
        header="X-Acme-Signature",
        template="{id}.{timestamp}.{body}",
        timestamp_header="X-Acme-Timestamp",
        id_header="X-Acme-Delivery",
    )
    body = b'{"order": 1}'
    signed = scheme.sign(body, timestamp=int(time.time()), event_id="dlv_1")
    with service(hub, process=False) as url:
        answers = [httpx2.post(f"{url}/webhooks/acme", content=body, headers=signed) for _ in range(2)]
        forged = httpx2.post(f"{url}/webhooks/acme", content=body, headers={**signed, "x-acme-delivery": "dlv_2"})
    assert [answer.json() for answer in answers] == [
        {"status": "accepted", "id": "dlv_1"},
        {"status": "duplicate", "id": "dlv_1"},
    ]
    assert forged.status_code == 401, "the delivery id is signed: another one breaks the signature"
    hub.close()


def test_a_signed_event_is_stored_once_and_a_duplicate_is_acknowledged(tmp_path: Path) -> None:
    hub = make_hub(tmp_path, STRIPE)
    with service(hub, process=False) as url:
        first = post_stripe(url, stripe_event("evt_1"))
        again = post_stripe(url, stripe_event("evt_1"))
    assert (first.status_code, first.json()) == (200, {"status": "accepted", "id": "evt_1"})
    assert (again.status_code, again.json()) == (200, {"status": "duplicate", "id": "evt_1"})
    with make_hub(tmp_path, STRIPE) as reopened:
        [stored] = reopened.inbox.events()
        assert (stored.event_id, stored.event_type, stored.status) == ("evt_1", "invoice.paid", "pending")
        found = reopened.inbox.get(stored.id)
        assert found is not None
        assert found[2] == stripe_event("evt_1"), "the raw body is kept byte for byte"
        assert "stripe-signature" not in found[1], "signatures are not kept with the event"


def test_bad_requests_get_the_right_4xx_and_store_nothing(tmp_path: Path) -> None:
    hub = make_hub(tmp_path, STRIPE + "\nmax_body = 2048")
    body = stripe_event("evt_bad")
    with service(hub, process=False) as url:
        unknown = httpx2.post(f"{url}/webhooks/nope", content=body)
        nested = httpx2.post(f"{url}/webhooks/stripe/extra", content=body)
        wrong_method = httpx2.get(f"{url}/webhooks/stripe")
        too_big = post_stripe(url, b"{" + b" " * 4096 + b"}")
        streamed = httpx2.post(f"{url}/webhooks/stripe", content=iter([b"{", b" " * 4096, b"}"]))
        unsigned = httpx2.post(f"{url}/webhooks/stripe", content=body)
        wrong_secret = post_stripe(url, body, secret="whsec_wrong")
        not_json = post_stripe(url, b"\xff\xfe not json")
        health = httpx2.get(f"{url}/healthz")
        ready = httpx2.get(f"{url}/readyz")
    assert [r.status_code for r in (unknown, nested, wrong_method, too_big, streamed)] == [404, 404, 405, 413, 413]
    assert (unsigned.status_code, wrong_secret.status_code, not_json.status_code) == (401, 401, 400)
    assert wrong_secret.json()["error"] == "invalid_signature"
    assert STRIPE_SECRET not in wrong_secret.text
    assert (health.status_code, ready.status_code, ready.json()["status"]) == (200, 200, "ready")
    with make_hub(tmp_path, STRIPE) as reopened:
        assert reopened.inbox.events() == []


def test_every_scheme_from_the_sandbox_sender_is_accepted(tmp_path: Path) -> None:
    from tether.sandbox.webhooks import send_webhook

    cases = {
        "stripe": STRIPE_SECRET,
        "github": GITHUB_SECRET,
        "shopify": "shpss_shopify_app_secret",
        "slack": "8f742231b10e8888abcd99yyyzzz85a5",
        "standard": SECRET,
        "svix": SECRET,
    }
    for scheme, secret in cases.items():
        hub = make_hub(tmp_path / scheme, f'scheme = "{scheme}"\nsecret = "${{S}}"', env={"S": secret}, name=scheme)
        with service(hub, process=False) as url:
            sent = send_webhook(f"{url}/webhooks/{scheme}", scheme, secret)
            resent = send_webhook(f"{url}/webhooks/{scheme}", scheme, secret, body=None, event_id=None)
        assert sent.status_code == 200, (scheme, sent.text)
        assert sent.json()["status"] == "accepted"
        assert resent.status_code == 200
        with make_hub(
            tmp_path / scheme, f'scheme = "{scheme}"\nsecret = "${{S}}"', env={"S": secret}, name=scheme
        ) as h:
            assert h.inbox.counts()[scheme]["pending"] >= 1


def test_slack_url_verification_is_answered_and_not_stored(tmp_path: Path) -> None:
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    hub = make_hub(tmp_path, 'scheme = "slack"\nsecret = "${S}"', env={"S": secret}, name="slack")
    body = json.dumps({"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    signed = scheme_for("slack", [secret]).sign(body.encode(), timestamp=int(time.time()))
    with service(hub, process=False) as url:
        answer = httpx2.post(
            f"{url}/webhooks/slack", content=body, headers={"content-type": "application/json", **signed}
        )
    assert answer.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    with make_hub(tmp_path, 'scheme = "slack"\nsecret = "${S}"', env={"S": secret}, name="slack") as reopened:
        assert reopened.inbox.events() == []


def test_rotation_accepts_the_old_and_the_new_secret(tmp_path: Path) -> None:
    hub = make_hub(
        tmp_path, 'scheme = "stripe"\nsecrets = ["${NEW}", "${OLD}"]', env={"NEW": "whsec_new", "OLD": "whsec_old"}
    )
    with service(hub, process=False) as url:
        assert post_stripe(url, stripe_event("evt_a"), secret="whsec_old").status_code == 200
        assert post_stripe(url, stripe_event("evt_b"), secret="whsec_new").status_code == 200
        assert post_stripe(url, stripe_event("evt_c"), secret="whsec_other").status_code == 401


# --- processing ---------------------------------------------------------------------------------------------


def test_sync_and_async_handlers_run_once_per_event_with_the_payload(tmp_path: Path) -> None:
    hub = make_hub(tmp_path, STRIPE)
    seen: list[tuple[str, str, object]] = []

    @hub.on("stripe", "invoice.*")
    def on_invoice(event: WebhookEvent) -> None:
        seen.append(("sync", event.id, event.payload["type"]))

    @hub.on("stripe", "customer.created")
    async def on_customer(event: WebhookEvent) -> None:
        await asyncio.sleep(0)
        seen.append(("async", event.id, event.type))

    with service(hub) as url:
        post_stripe(url, stripe_event("evt_1", "invoice.paid"))
        post_stripe(url, stripe_event("evt_2", "customer.created"))
        post_stripe(url, stripe_event("evt_3", "charge.refunded"))  # no handler: completed, nothing runs
        post_stripe(url, stripe_event("evt_1", "invoice.paid"))  # the provider's retry
        wait_for(lambda: hub.inbox.counts()["stripe"]["done"] == 3)
    assert sorted(seen) == [("async", "evt_2", "customer.created"), ("sync", "evt_1", "invoice.paid")]


def test_a_failing_handler_is_retried_then_dead_lettered_then_replayed(tmp_path: Path) -> None:
    hub = make_hub(tmp_path, STRIPE + '\nattempts = 3\nbackoff = "20ms"\nmax_backoff = "50ms"')
    calls: list[int] = []
    healed = threading.Event()

    @hub.on("stripe")
    def flaky(event: WebhookEvent) -> None:
        calls.append(event.attempt)
        if not healed.is_set():
            raise RuntimeError("database unavailable")

    with service(hub) as url:
        post_stripe(url, stripe_event("evt_1"))
        wait_for(lambda: hub.inbox.counts()["stripe"]["dead"] == 1)
        [dead] = hub.inbox.events(status="dead")
        assert dead.attempts == 3
        assert dead.last_error == "RuntimeError: database unavailable"
        assert calls == [1, 2, 3]
        healed.set()
        assert hub.inbox.replay(dead=True) == [dead.id]
        wait_for(lambda: hub.inbox.counts()["stripe"]["done"] == 1)
    assert calls == [1, 2, 3, 1]


def test_forwarding_re_signs_with_the_tether_secret_and_retries(tmp_path: Path, recorder: tuple[Recorder, str]) -> None:
    record, target = recorder
    record.fail_first = 2
    forward = f'forward = {{ url = "{target}", secret = "${{FORWARD_SECRET}}" }}\nbackoff = "20ms"'
    hub = make_hub(tmp_path, STRIPE + "\n" + forward)
    with service(hub) as url:
        post_stripe(url, stripe_event("evt_fwd"))
        wait_for(lambda: hub.inbox.counts()["stripe"]["done"] == 1)
    [(headers, body)] = record.received
    assert body == stripe_event("evt_fwd")
    assert record.failures == 2
    scheme_for("standard", [SECRET]).verify(body, headers)  # the internal service can verify it
    assert headers["webhook-id"] == "evt_fwd"
    assert headers["tether-event-type"] == "invoice.paid"


def test_shutdown_lets_a_running_handler_finish(tmp_path: Path) -> None:
    hub = make_hub(tmp_path, STRIPE)
    started, finished = threading.Event(), threading.Event()

    @hub.on("stripe")
    def slow(event: WebhookEvent) -> None:
        started.set()
        time.sleep(0.5)
        finished.set()

    with service(hub, grace=5.0) as url:
        post_stripe(url, stripe_event("evt_slow"))
        assert started.wait(5)
    assert finished.is_set()
    with make_hub(tmp_path, STRIPE) as reopened:
        assert reopened.inbox.counts()["stripe"]["done"] == 1


def test_two_instances_share_one_postgresql_inbox(tmp_path: Path, postgres: PostgresSpace) -> None:
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def hub_for(instance: str) -> tether.Hub:
        hub = make_hub(tmp_path, STRIPE, store=postgres.url)

        @hub.on("stripe")
        def count(event: WebhookEvent) -> None:
            with lock:
                counts[event.id] = counts.get(event.id, 0) + 1

        return hub

    first, second = hub_for("a"), hub_for("b")
    with service(first) as url_a, service(second) as url_b:
        for number in range(60):
            post_stripe(url_a if number % 2 else url_b, stripe_event(f"evt_{number % 50}"))
        wait_for(lambda: sum(counts.values()) >= 50, timeout=20)
        time.sleep(0.3)
    assert sorted(counts) == sorted(f"evt_{n}" for n in range(50))
    assert set(counts.values()) == {1}, "each event ran exactly once across the two instances"
