"""Webhook signature schemes: the providers' published vectors, round trips with their own libraries, rotation,
tolerance, several signatures at once, Ed25519, the generic HMAC options, and hostile input.

Nothing is mocked: signatures come from the providers' documentation, from their PyPI libraries (``stripe``,
``standardwebhooks``, ``svix``) or from tether's ``sign``, and each is checked by the other side.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import standardwebhooks
import stripe
import svix
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from tether.webhooks.schemes import (
    Scheme,
    VerificationError,
    generate_keypair,
    generate_secret,
    scheme_for,
)

NOW = 1_800_000_000
BODY = b'{"id":"evt_1","type":"invoice.paid","data":{"object":{"amount":1200}}}'
RAW_SECRET = "s3cr3t-for-tests"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HMAC_TIMESTAMPED = {"header": "X-Signature", "template": "{timestamp}.{body}", "timestamp_header": "X-Timestamp"}
WHSK, _ = generate_keypair()

# Every scheme, built from a name, its secret and options: the parametrization of the cross-scheme tests.
SCHEMES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "stripe": ("stripe", "whsec_stripe_test_secret", {}),
    "github": ("github", RAW_SECRET, {}),
    "shopify": ("shopify", RAW_SECRET, {}),
    "slack": ("slack", RAW_SECRET, {}),
    "standard": ("standard", WHSEC, {}),
    "svix": ("svix", WHSEC, {}),
    "standard-ed25519": ("standard", WHSK, {}),
    "hmac": ("hmac", RAW_SECRET, {"header": "X-Signature"}),
    "hmac-timestamped": ("hmac", RAW_SECRET, HMAC_TIMESTAMPED),
}
TIMESTAMPED = ["stripe", "slack", "standard", "svix", "standard-ed25519", "hmac-timestamped"]


def build(key: str, *secrets: str, tolerance: float = 300.0) -> Scheme:
    name, secret, options = SCHEMES[key]
    return scheme_for(name, list(secrets) or [secret], tolerance=tolerance, **options)


BUILT = {key: build(key) for key in SCHEMES}


def reason(scheme: Scheme, body: bytes, headers: dict[str, str], now: float = NOW) -> str:
    with pytest.raises(VerificationError) as caught:
        scheme.verify(body, headers, now=now)
    return caught.value.reason


# --- the providers' published examples ----------------------------------------------------------------------------


def test_github_documentation_example_verifies_and_is_reproduced() -> None:
    # docs.github.com, "Validating webhook deliveries": secret, payload and signature of the worked example.
    secret, payload = "It's a Secret to Everybody", b"Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    scheme = scheme_for("github", [secret])
    scheme.verify(payload, {"x-hub-signature-256": expected})
    assert scheme.sign(payload)["x-hub-signature-256"] == expected


SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)


def test_slack_documentation_example_verifies_and_is_reproduced() -> None:
    # api.slack.com/authentication/verifying-requests-from-slack: the slash-command walkthrough.
    scheme = scheme_for("slack", ["8f742231b10e8888abcd99yyyzzz85a5"])
    headers = {
        "x-slack-request-timestamp": "1531420618",
        "x-slack-signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
    }
    scheme.verify(SLACK_BODY, headers, now=1531420618 + 60)
    assert scheme.sign(SLACK_BODY, timestamp=1531420618) == headers
    assert reason(scheme, SLACK_BODY, headers, now=1531420618 + 301) == "timestamp outside the 300 s tolerance"


@pytest.mark.parametrize("prefix", ["webhook-", "svix-"])
def test_standard_webhooks_reference_vector_verifies_and_is_reproduced(prefix: str) -> None:
    # standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py, test_sign_function.
    body = b'{"test": 2432232314}'
    headers = {
        f"{prefix}id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        f"{prefix}timestamp": "1614265330",
        f"{prefix}signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    for name in ("standard", "svix"):
        scheme_for(name, [WHSEC]).verify(body, headers, now=1614265330)
    signed = scheme_for("standard" if prefix == "webhook-" else "svix", [WHSEC]).sign(
        body, timestamp=1614265330, event_id="msg_p5jXN8AQM9LWM0D4loKWxJek"
    )
    assert signed == headers


def test_a_whsec_secret_without_its_prefix_is_the_same_key() -> None:
    headers = scheme_for("standard", [WHSEC]).sign(BODY, timestamp=NOW)
    scheme_for("standard", [WHSEC.removeprefix("whsec_")]).verify(BODY, headers, now=NOW)


def test_shopify_signature_is_the_base64_hmac_of_the_raw_body() -> None:
    # Shopify publishes no vector; the digest is computed here independently from its documented definition.
    expected = base64.b64encode(hmac.new(RAW_SECRET.encode(), BODY, hashlib.sha256).digest()).decode()
    scheme = scheme_for("shopify", [RAW_SECRET])
    scheme.verify(BODY, {"x-shopify-hmac-sha256": expected})
    assert scheme.sign(BODY)["x-shopify-hmac-sha256"] == expected


# --- round trips with the providers' own libraries ----------------------------------------------------------------


def test_stripe_library_signatures_verify_and_stripe_verifies_ours() -> None:
    secret = "whsec_test_" + "a1" * 16
    payload = json.dumps({"id": "evt_123", "object": "event", "type": "invoice.paid"})
    now = int(time.time())
    theirs = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=now)
    scheme = scheme_for("stripe", [secret])
    scheme.verify(payload.encode(), {"stripe-signature": theirs}, now=now)
    ours = scheme.sign(payload.encode(), timestamp=now)["stripe-signature"]
    assert stripe.WebhookSignature.verify_header(payload, ours, secret, tolerance=300)
    assert ours == theirs


def test_standardwebhooks_library_signatures_verify_and_it_verifies_ours() -> None:
    secret = generate_secret()
    body = b'{"type":"contact.created","timestamp":"2022-11-03T20:26:10Z","data":{"id":"c_1"}}'
    now = int(time.time())
    library = standardwebhooks.Webhook(secret)
    signature = library.sign("msg_abc", datetime.fromtimestamp(now, tz=UTC), body.decode())
    headers = {"webhook-id": "msg_abc", "webhook-timestamp": str(now), "webhook-signature": signature}
    scheme = scheme_for("standard", [secret])
    scheme.verify(body, headers, now=now)
    assert library.verify(body, scheme.sign(body, event_id="msg_xyz")) == json.loads(body)


def test_svix_library_signatures_verify_and_it_verifies_ours() -> None:
    secret = generate_secret(32)
    body = b'{"type":"user.created","data":{"id":"u_1"}}'
    now = int(time.time())
    library = svix.Webhook(secret)
    signature = library.sign("msg_svix", datetime.fromtimestamp(now, tz=UTC), body.decode())
    headers = {"svix-id": "msg_svix", "svix-timestamp": str(now), "svix-signature": signature}
    scheme = scheme_for("svix", [secret])
    scheme.verify(body, headers, now=now)
    scheme_for("standard", [secret]).verify(body, headers, now=now)
    ours = scheme.sign(body)
    assert set(ours) == {"svix-id", "svix-timestamp", "svix-signature"}
    library.verify(body, ours)
    library.verify(body, scheme_for("standard", [secret]).sign(body))


# --- behaviour common to every scheme ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", SCHEMES)
def test_a_signed_body_verifies_and_a_tampered_one_does_not(key: str) -> None:
    scheme = build(key)
    headers = scheme.sign(BODY, timestamp=NOW, event_id="evt_42")
    scheme.verify(BODY, headers, now=NOW)
    assert reason(scheme, BODY + b" ", headers) == "no signature matched"
    assert reason(scheme, BODY.replace(b"1200", b"9999"), headers) == "no signature matched"


@pytest.mark.parametrize("key", SCHEMES)
def test_a_signature_by_the_second_secret_verifies_during_rotation(key: str) -> None:
    secret, old = SCHEMES[key][1], generate_secret()
    headers = build(key, secret).sign(BODY, timestamp=NOW)
    build(key, old, secret).verify(BODY, headers, now=NOW)
    assert reason(build(key, old), BODY, headers) == "no signature matched"


@pytest.mark.parametrize("key", TIMESTAMPED)
@pytest.mark.parametrize(("offset", "fresh"), [(0, True), (300, True), (-300, True), (301, False), (-301, False)])
def test_timestamps_are_accepted_up_to_the_tolerance_either_way(key: str, offset: int, fresh: bool) -> None:
    scheme = build(key)
    headers = scheme.sign(BODY, timestamp=NOW)
    if fresh:
        scheme.verify(BODY, headers, now=NOW + offset)
    else:
        assert reason(scheme, BODY, headers, now=NOW + offset) == "timestamp outside the 300 s tolerance"


def test_the_tolerance_is_configurable_and_now_defaults_to_the_clock() -> None:
    scheme = build("stripe", tolerance=10)
    assert (
        reason(scheme, BODY, scheme.sign(BODY, timestamp=NOW), now=NOW + 11) == "timestamp outside the 10 s tolerance"
    )
    scheme.verify(BODY, scheme.sign(BODY))
    assert reason(scheme, BODY, scheme.sign(BODY, timestamp=int(time.time()) - 60)).startswith("timestamp outside")


@pytest.mark.parametrize("key", ["github", "shopify", "hmac"])
def test_schemes_without_a_signed_timestamp_ignore_the_clock(key: str) -> None:
    scheme = build(key)
    scheme.verify(BODY, scheme.sign(BODY, timestamp=0), now=NOW)


@pytest.mark.parametrize(
    ("key", "missing"),
    [
        ("stripe", "no Stripe-Signature header"),
        ("github", "no X-Hub-Signature-256 header"),
        ("shopify", "no X-Shopify-Hmac-Sha256 header"),
        ("slack", "no X-Slack-Signature header"),
        ("standard", "no webhook-signature header"),
        ("svix", "no svix-signature header"),
        ("hmac", "no x-signature header"),
    ],
)
def test_a_request_without_the_signature_header_names_it(key: str, missing: str) -> None:
    assert reason(build(key), BODY, {"content-type": "application/json"}) == missing


@pytest.mark.parametrize("key", SCHEMES)
def test_reasons_never_show_the_secret_or_a_signature(key: str) -> None:
    scheme = build(key)
    good = scheme.sign(BODY, timestamp=NOW)
    variants = [
        good,
        {name: value[:-2] + "00" for name, value in good.items()},
        {name: value + "," for name, value in good.items()},
        {name: "x" * 10_000 for name in good},
    ]
    cases = [(BODY + b"!", headers, NOW) for headers in variants]
    if key in TIMESTAMPED:
        cases.append((BODY, good, NOW + 10_000))
    for body, headers, now in cases:
        text = reason(scheme, body, headers, now)
        assert SCHEMES[key][1] not in text
        assert not any(len(value) > 8 and value in text for value in good.values())


@pytest.mark.parametrize("key", SCHEMES)
def test_repr_never_shows_the_secret(key: str) -> None:
    assert SCHEMES[key][1] not in repr(build(key))
    assert repr(build(key)).startswith("<")


# --- several signatures in one header --------------------------------------------------------------------------


def test_stripe_accepts_any_matching_v1_among_several_and_ignores_v0() -> None:
    scheme = build("stripe")
    good = scheme.sign(BODY, timestamp=NOW)["stripe-signature"].split(",")[1]
    header = f"t={NOW},v1={'0' * 64},v0={'1' * 64},v1=nothex,{good}"
    scheme.verify(BODY, {"stripe-signature": header}, now=NOW)
    assert reason(scheme, BODY, {"stripe-signature": f"t={NOW},v0={good[3:]}"}) == (
        "the Stripe-Signature header has no v1 signature"
    )
    assert reason(scheme, BODY, {"stripe-signature": good}) == "the Stripe-Signature header has no timestamp (t=)"
    duplicated = {"stripe-signature": f"t={NOW},t={NOW},{good}"}
    assert reason(scheme, BODY, duplicated) == "the Stripe-Signature header has more than one timestamp (t=)"


def test_standard_accepts_a_valid_signature_among_unknown_versions_and_garbage() -> None:
    scheme = build("standard")
    headers = scheme.sign(BODY, timestamp=NOW)
    headers["webhook-signature"] = " ".join(
        ["v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", "v2,abc", "v1,!!notbase64", headers["webhook-signature"]]
    )
    scheme.verify(BODY, headers, now=NOW)
    headers["webhook-signature"] = "v2,abc v3,def"
    assert reason(scheme, BODY, headers) == "the webhook-signature header has no v1 or v1a signature"
    headers["webhook-signature"] = " ".join(["v1,AAAA"] * 17)
    assert reason(scheme, BODY, headers) == "the webhook-signature header has more than 16 signatures"


# --- Ed25519 (v1a) --------------------------------------------------------------------------------------------------


def test_a_v1a_signature_by_a_whsk_key_verifies_with_its_whpk_public_key() -> None:
    secret_key, public_key = generate_keypair()
    headers = scheme_for("standard", [secret_key]).sign(BODY, timestamp=NOW, event_id="msg_1")
    assert headers["webhook-signature"].startswith("v1a,")
    scheme_for("standard", [public_key]).verify(BODY, headers, now=NOW)
    scheme_for("svix", [WHSEC, public_key]).verify(BODY, headers, now=NOW)
    scheme_for("standard", [secret_key]).verify(BODY, headers, now=NOW)
    _, other_public = generate_keypair()
    assert reason(scheme_for("standard", [other_public]), BODY, headers) == "no signature matched"
    assert reason(scheme_for("standard", [public_key]), BODY + b"x", headers) == "no signature matched"
    assert reason(scheme_for("standard", [WHSEC]), BODY, headers) == "no signature matched"


def test_hmac_and_ed25519_signatures_side_by_side_each_verify_with_their_key() -> None:
    secret_key, public_key = generate_keypair()
    symmetric = scheme_for("standard", [WHSEC]).sign(BODY, timestamp=NOW, event_id="msg_2")
    asymmetric = scheme_for("standard", [secret_key]).sign(BODY, timestamp=NOW, event_id="msg_2")
    both = {**symmetric, "webhook-signature": f"{symmetric['webhook-signature']} {asymmetric['webhook-signature']}"}
    scheme_for("standard", [WHSEC]).verify(BODY, both, now=NOW)
    scheme_for("standard", [public_key]).verify(BODY, both, now=NOW)


def test_the_64_byte_libsodium_form_of_a_whsk_key_is_accepted_and_checked() -> None:
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    long_form = "whsk_" + base64.b64encode(seed + public).decode()
    headers = scheme_for("standard", [long_form]).sign(BODY, timestamp=NOW)
    scheme_for("standard", ["whpk_" + base64.b64encode(public).decode()]).verify(BODY, headers, now=NOW)
    wrong_half = "whsk_" + base64.b64encode(seed + bytes(32)).decode()
    with pytest.raises(ValueError, match="second half is not its public key"):
        scheme_for("standard", [wrong_half])


def test_a_public_key_cannot_sign() -> None:
    _, public_key = generate_keypair()
    with pytest.raises(ValueError, match="cannot sign"):
        scheme_for("standard", [public_key]).sign(BODY)


# --- the generic hmac scheme --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "signature"),
    [
        ({}, hmac.new(RAW_SECRET.encode(), BODY, hashlib.sha256).hexdigest()),
        (
            {"encoding": "base64"},
            base64.b64encode(hmac.new(RAW_SECRET.encode(), BODY, hashlib.sha256).digest()).decode(),
        ),
        ({"prefix": "sha256="}, "sha256=" + hmac.new(RAW_SECRET.encode(), BODY, hashlib.sha256).hexdigest()),
        ({"algorithm": "sha1"}, hmac.new(RAW_SECRET.encode(), BODY, hashlib.sha1).hexdigest()),
        (
            {"algorithm": "sha512", "prefix": "v1="},
            "v1=" + hmac.new(RAW_SECRET.encode(), BODY, hashlib.sha512).hexdigest(),
        ),
    ],
    ids=["hex", "base64", "prefix", "sha1", "sha512"],
)
def test_generic_hmac_verifies_signatures_computed_independently(options: dict[str, Any], signature: str) -> None:
    scheme = scheme_for("hmac", [RAW_SECRET], header="X-Signature", **options)
    scheme.verify(BODY, {"x-signature": signature})
    assert scheme.sign(BODY)["x-signature"] == signature
    assert reason(scheme, BODY + b"\n", {"x-signature": signature}) == "no signature matched"


def test_hex_signatures_are_accepted_in_upper_case() -> None:
    upper = hmac.new(RAW_SECRET.encode(), BODY, hashlib.sha256).hexdigest().upper()
    scheme_for("hmac", [RAW_SECRET], header="X-Signature").verify(BODY, {"x-signature": upper})
    scheme_for("github", [RAW_SECRET]).verify(BODY, {"x-hub-signature-256": f"sha256={upper}"})


def test_generic_hmac_signs_the_timestamp_and_id_its_template_names() -> None:
    options = {"template": "{id}:{timestamp}:{body}", "timestamp_header": "X-Ts", "id_header": "X-Delivery"}
    scheme = scheme_for("hmac", [RAW_SECRET], header="X-Sig", prefix="sha256=", **options)
    expected = hmac.new(RAW_SECRET.encode(), f"d-1:{NOW}:".encode() + BODY, hashlib.sha256).hexdigest()
    headers = {"x-sig": f"sha256={expected}", "x-ts": str(NOW), "x-delivery": "d-1"}
    scheme.verify(BODY, headers, now=NOW)
    assert scheme.sign(BODY, timestamp=NOW, event_id="d-1") == headers
    assert scheme.event_id(headers, {"id": "ignored"}) == "d-1"
    assert reason(scheme, BODY, {**headers, "x-delivery": "d-2"}) == "no signature matched"
    assert reason(scheme, BODY, {"x-sig": headers["x-sig"], "x-ts": str(NOW)}) == "no x-delivery header"
    assert reason(scheme, BODY, {**headers, "x-sig": expected}) == "the x-sig header does not start with 'sha256='"


def test_generic_hmac_reads_a_millisecond_timestamp_and_signs_it_as_sent() -> None:
    scheme = scheme_for("hmac", [RAW_SECRET], **HMAC_TIMESTAMPED)
    millis = str(NOW * 1000 + 250)
    signature = hmac.new(RAW_SECRET.encode(), f"{millis}.".encode() + BODY, hashlib.sha256).hexdigest()
    headers = {"x-signature": signature, "x-timestamp": millis}
    scheme.verify(BODY, headers, now=NOW + 299)
    assert reason(scheme, BODY, headers, now=NOW + 301) == "timestamp outside the 300 s tolerance"


def test_literal_braces_in_a_template_are_written_doubled() -> None:
    scheme = scheme_for("hmac", [RAW_SECRET], header="X-Sig", template="{{{body}}}")
    expected = hmac.new(RAW_SECRET.encode(), b"{" + BODY + b"}", hashlib.sha256).hexdigest()
    scheme.verify(BODY, {"x-sig": expected})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs 'header'"),
        ({"header": "X Sig"}, "must be an HTTP header name"),
        ({"header": "X-Sig", "algorithm": "md5"}, "'algorithm' must be one of"),
        ({"header": "X-Sig", "encoding": "base32"}, "'encoding' must be one of"),
        ({"header": "X-Sig", "prefix": "é="}, "'prefix' must be ASCII"),
        ({"header": "X-Sig", "template": b"{body}"}, "'template' must be text"),
        ({"header": "X-Sig", "template": "{timestamp}"}, "{body} exactly once"),
        ({"header": "X-Sig", "template": "{body}{body}"}, "{body} exactly once"),
        ({"header": "X-Sig", "template": "{nonce}.{body}"}, "not {nonce}"),
        ({"header": "X-Sig", "template": "{body!r}"}, "may only use"),
        ({"header": "X-Sig", "template": "{body"}, "is malformed"),
        ({"header": "X-Sig", "template": "{timestamp}.{body}"}, "'timestamp_header'"),
        ({"header": "X-Sig", "timestamp_header": "X-Ts"}, "unsigned timestamp proves nothing"),
        ({"header": "X-Sig", "template": "{id}.{body}"}, "'id_header'"),
        ({"header": "X-Sig", "colour": "blue"}, "unknown hmac option(s) colour"),
    ],
)
def test_generic_hmac_options_are_checked_with_clear_messages(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{")):
        scheme_for("hmac", [RAW_SECRET], **options)


# --- scheme_for refuses what cannot work ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "secrets", "kwargs", "message"),
    [
        ("paypal", ["x"], {}, "unknown webhook scheme 'paypal'"),
        ("stripe", [], {}, "no secret"),
        ("stripe", "whsec_abc", {}, "as a list"),
        ("stripe", ["whsec_abc", ""], {}, "secret 2 is empty"),
        ("github", ["secret\n"], {}, "secret 1 starts or ends with whitespace"),
        ("standard", ["whsec_not base64!"], {}, "secret 1 is not base64 after its whsec_ prefix"),
        ("svix", ["whpk_" + base64.b64encode(b"short").decode()], {}, "an Ed25519 public key has 32"),
        ("standard", ["whsk_" + base64.b64encode(b"x" * 40).decode()], {}, "an Ed25519 secret key has 32"),
        ("standard", ["whsec_"], {}, "decodes to an empty key"),
        ("stripe", ["x"], {"header": "X-Sig"}, "takes no options"),
        ("stripe", ["x"], {"tolerance": 0}, "tolerance must be a positive number"),
        ("stripe", ["x"], {"tolerance": float("nan")}, "tolerance must be a positive number"),
        ("stripe", ["x"], {"tolerance": "5m"}, "tolerance must be a positive number"),
    ],
)
def test_scheme_for_refuses_bad_input_without_showing_the_secret(
    name: str, secrets: Any, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as caught:
        scheme_for(name, secrets, **kwargs)
    assert "not base64!" not in str(caught.value)


def test_a_tolerance_over_an_hour_warns_about_replays() -> None:
    with pytest.warns(UserWarning, match="replayed"):
        scheme_for("stripe", ["x"], tolerance=86400)


def test_sign_refuses_ids_and_timestamps_that_cannot_be_sent() -> None:
    for key in ("github", "standard", "shopify"):
        with pytest.raises(ValueError, match="printable ASCII"):
            build(key).sign(BODY, event_id="two words")
    with pytest.raises(ValueError, match="non-negative"):
        build("stripe").sign(BODY, timestamp=-1)


# --- event ids and types --------------------------------------------------------------------------------------------


def test_event_ids_and_types_come_from_where_each_provider_puts_them() -> None:
    stripe_event = {"id": "evt_1", "type": "invoice.paid"}
    assert (build("stripe").event_id({}, stripe_event), build("stripe").event_type({}, stripe_event)) == (
        "evt_1",
        "invoice.paid",
    )
    github = {"x-github-delivery": "72d3162e", "x-github-event": "issues"}
    assert build("github").event_id(github, {}) == "72d3162e"
    assert build("github").event_type(github, {"action": "opened"}) == "issues.opened"
    assert build("github").event_type({**github, "x-github-event": "push"}, {"ref": "main"}) == "push"
    assert build("github").event_type(github, {"action": 3}) == "issues"
    shopify = {"x-shopify-topic": "orders/create", "x-shopify-event-id": "e-1"}
    assert (build("shopify").event_id(shopify, None), build("shopify").event_type(shopify, None)) == (
        "e-1",
        "orders/create",
    )
    assert build("shopify").event_id({**shopify, "x-shopify-webhook-id": "w-1"}, None) == "w-1"
    slack_event = {"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_mention"}}
    assert (build("slack").event_id({}, slack_event), build("slack").event_type({}, slack_event)) == (
        "Ev1",
        "app_mention",
    )
    assert build("slack").event_type({}, {"type": "url_verification", "challenge": "c"}) == "url_verification"
    assert build("standard").event_id({"webhook-id": "msg_1"}, {}) == "msg_1"
    assert build("standard").event_id({"svix-id": "msg_2", "svix-signature": "v1,x"}, {}) == "msg_2"
    assert build("svix").event_type({}, {"type": "user.created"}) == "user.created"
    assert (build("hmac").event_id({}, {"id": "h-1"}), build("hmac").event_type({}, {"type": "t"})) == ("h-1", "t")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
weird_payloads = json_values | st.dictionaries(
    st.sampled_from(["id", "type", "event", "event_id", "action"]), json_values, max_size=5
)


@given(payload=weird_payloads, headers=st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=4))
def test_event_id_and_type_never_raise_and_return_strings_or_none(payload: Any, headers: dict[str, str]) -> None:
    for scheme in BUILT.values():
        for value in (scheme.event_id(headers, payload), scheme.event_type(headers, payload)):
            assert value is None or isinstance(value, str)


# --- hostile input: only VerificationError ------------------------------------------------------------------------

HEADER_NAMES = [
    "stripe-signature",
    "x-hub-signature-256",
    "x-shopify-hmac-sha256",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "x-signature",
    "x-timestamp",
]
header_values = st.one_of(
    st.text(),
    st.text(alphabet="0123456789abcdefABCDEF=,.tv1a +/ -\t", max_size=200),
    st.builds(lambda ts, sig: f"t={ts},v1={sig}", st.text(max_size=20), st.text(max_size=70)),
    st.builds(lambda ts, sig: f"t={ts},v1={sig}", st.integers(0, 2 * NOW), st.text(alphabet="0123456789abcdef")),
    st.builds(lambda sig: f"sha256={sig}", st.text(alphabet="0123456789abcdef", max_size=66)),
    st.builds(lambda sig: f"v1,{sig} v1a,{sig}", st.text(alphabet="ABCDEFabcdef0123456789+/=", max_size=100)),
    st.builds(lambda n: "v1a," + base64.b64encode(bytes(n)).decode(), st.integers(0, 80)),
    st.sampled_from(["", " ", "sha256=", "v0=", "v1,", "9" * 40, "-1", "١٢٣", "1e9", "0x10", "\x00", "\ud800"]),
    st.integers(-(10**20), 10**20).map(str),
)


@given(
    body=st.binary(max_size=300),
    headers=st.dictionaries(st.sampled_from(HEADER_NAMES) | st.text(max_size=12), header_values, max_size=8),
    now=st.floats(allow_nan=False, allow_infinity=False) | st.none(),
)
def test_arbitrary_bodies_and_headers_raise_only_verification_error(
    body: bytes, headers: dict[str, str], now: float | None
) -> None:
    for scheme in BUILT.values():
        with pytest.raises(VerificationError) as caught:
            scheme.verify(body, headers, now=now)
        assert caught.value.reason


@given(body=st.binary(max_size=200), flip=st.integers(min_value=0))
def test_any_body_round_trips_and_any_changed_byte_fails(body: bytes, flip: int) -> None:
    for scheme in BUILT.values():
        headers = scheme.sign(body, timestamp=NOW, event_id="evt_prop")
        scheme.verify(body, headers, now=NOW)
        if body:
            changed = bytearray(body)
            changed[flip % len(body)] ^= 0x01
            assert reason(scheme, bytes(changed), headers) == "no signature matched"


def test_oversized_signature_headers_are_refused_before_parsing() -> None:
    assert reason(build("stripe"), BODY, {"stripe-signature": "t=1," + "v1=" * 3000}) == (
        "the Stripe-Signature header is too long"
    )


@pytest.mark.parametrize(
    ("key", "header", "value", "expected"),
    [
        ("slack", "x-slack-signature", "v1=abcd", "the X-Slack-Signature header is not v0=<hex>"),
        ("slack", "x-slack-signature", "v0=xyz", "the X-Slack-Signature header is not v0=<hex>"),
        ("github", "x-hub-signature-256", "sha1=abcd", "the X-Hub-Signature-256 header is not sha256=<hex>"),
        ("shopify", "x-shopify-hmac-sha256", "not base64!", "the X-Shopify-Hmac-Sha256 header is not base64"),
        ("hmac", "x-signature", "zz", "the x-signature header is not <hex>"),
        ("standard", "webhook-id", "msg_é", "the webhook-id header is not ASCII"),
    ],
)
def test_malformed_signature_headers_say_what_is_wrong(key: str, header: str, value: str, expected: str) -> None:
    scheme = BUILT[key]
    headers = {**scheme.sign(BODY, timestamp=NOW), header: value}
    assert reason(scheme, BODY, headers) == expected


def test_non_ascii_and_non_numeric_timestamps_are_refused() -> None:
    scheme = build("slack")
    headers = scheme.sign(BODY, timestamp=NOW)
    for bad in ("١٢٣٤", "12.5", "-5", "1e9", " ", "9" * 16):
        result = reason(scheme, BODY, {**headers, "x-slack-request-timestamp": bad})
        assert result in {
            "X-Slack-Request-Timestamp is not a Unix timestamp",
            "the X-Slack-Request-Timestamp header is not ASCII",
            "no X-Slack-Request-Timestamp header",
        }
