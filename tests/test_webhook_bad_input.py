"""Bad input to the webhook receiver: random bodies, headers and signatures give a 4xx, raise nothing, store nothing.

The receiver is driven through httpx2's ASGI transport (the app's own code, in process: hypothesis needs
thousands of requests), with real SQLite and PostgreSQL inboxes behind it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import tether
from tether.webhooks import app as webhook_app
from tether.webhooks.schemes import scheme_for
from webhook_fixtures import GITHUB_SECRET, SECRET, STRIPE_SECRET, make_hub

SCHEMES = {
    "stripe": (STRIPE_SECRET, ["stripe-signature"]),
    "github": (GITHUB_SECRET, ["x-hub-signature-256", "x-github-delivery", "x-github-event"]),
    "shopify": ("shpss_secret", ["x-shopify-hmac-sha256", "x-shopify-webhook-id", "x-shopify-topic"]),
    "slack": ("8f742231b10e8888abcd99yyyzzz85a5", ["x-slack-signature", "x-slack-request-timestamp"]),
    "standard": (SECRET, ["webhook-id", "webhook-timestamp", "webhook-signature"]),
    "svix": (SECRET, ["svix-id", "svix-timestamp", "svix-signature"]),
}
HEADER_NAMES = sorted({name for _, names in SCHEMES.values() for name in names})
# Header values as they come off the wire: any latin-1 text, including the scheme's own prefixes.
header_value = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=120),
    st.sampled_from(["t=1,v1=00", "sha256=zz", "v1,AAAA", "v0=", "t=,v1=", "v1a,@@", "9" * 40, "-1", "1e9"]),
)


def config(scheme: str) -> str:
    return f'scheme = "{scheme}"\nsecret = "${{S}}"\nmax_body = 4096'


@pytest.fixture(params=["sqlite", "postgresql"])
def hubs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, tether.Hub]]:
    store = None if request.param == "sqlite" else request.getfixturevalue("postgres").url
    opened = {}
    for scheme, (secret, _) in SCHEMES.items():
        folder = tmp_path / scheme
        folder.mkdir()
        opened[scheme] = make_hub(folder, config(scheme), env={"S": secret}, name=scheme, store=store)
    yield opened
    for hub in opened.values():
        hub.close()


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    scheme=st.sampled_from(sorted(SCHEMES)),
    body=st.binary(max_size=600),
    garbage=st.dictionaries(st.sampled_from(HEADER_NAMES), header_value),
    content_type=st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", ""]),
)
def test_unsigned_or_mangled_requests_get_a_4xx_and_store_nothing(
    hubs: dict[str, tether.Hub], scheme: str, body: bytes, garbage: dict[str, str], content_type: str
) -> None:
    status = asyncio.run(_post(hubs[scheme], scheme, body, {**garbage, "content-type": content_type}))
    assert 400 <= status < 500
    assert hubs[scheme].inbox.events() == []


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scheme=st.sampled_from(sorted(SCHEMES)), body=st.binary(max_size=600), tamper=st.integers(0, 599))
def test_a_correct_signature_over_other_bytes_is_refused(
    hubs: dict[str, tether.Hub], scheme: str, body: bytes, tamper: int
) -> None:
    secret = SCHEMES[scheme][0]
    signed = scheme_for(scheme, [secret]).sign(body, timestamp=int(time.time()), event_id="evt_fuzz")
    changed = bytearray(body + b" ")
    changed[tamper % len(changed)] ^= 0x01
    status = asyncio.run(_post(hubs[scheme], scheme, bytes(changed), signed))
    assert status == 401
    assert hubs[scheme].inbox.events() == []


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scheme=st.sampled_from(sorted(SCHEMES)), body=st.binary(max_size=300))
def test_a_correctly_signed_body_that_is_not_json_is_a_400(
    hubs: dict[str, tether.Hub], scheme: str, body: bytes
) -> None:
    assume(not _is_json(body))
    secret = SCHEMES[scheme][0]
    signed = scheme_for(scheme, [secret]).sign(body, timestamp=int(time.time()), event_id="evt_fuzz")
    status = asyncio.run(_post(hubs[scheme], scheme, body, {**signed, "content-type": "application/json"}))
    assert status == 400
    assert hubs[scheme].inbox.events() == []


async def _post(hub: tether.Hub, scheme: str, body: bytes, headers: dict[str, str]) -> int:
    receiver = webhook_app(hub, process=False)
    transport = httpx2.ASGITransport(app=receiver, raise_app_exceptions=True)
    try:
        async with httpx2.AsyncClient(transport=transport, base_url="http://tether.test") as client:
            raw = {name: value.encode("latin-1") for name, value in headers.items()}  # as bytes on the wire
            response = await client.post(f"/{scheme}", content=body, headers=raw)
    finally:
        await receiver.aclose()
    return response.status_code


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True
