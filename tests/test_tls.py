"""TLS failures are told apart, against real loopback TLS servers with certificates the tests make."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

import tether
from tether.config import parse_config
from tether.sandbox import CertificateSet, SandboxServer, TLSMode, running_sandbox


def _hub(server: SandboxServer, ca: Path) -> tether.Hub:
    config = parse_config(
        f"""
        [integrations.secure]
        base_url = "{server.url}"
        ca_bundle = "{ca}"
        auth = {{ type = "api_key", key = "${{SANDBOX_KEY}}" }}
        """,
        env={"SANDBOX_KEY": "sk_test_sandbox"},
    )
    return tether.Hub(config)


@pytest.fixture(scope="module")
def servers(sandbox_certs: CertificateSet) -> Iterator[dict[TLSMode, SandboxServer]]:
    modes: tuple[TLSMode, ...] = ("valid", "expired", "self_signed", "wrong_host")
    running = {mode: running_sandbox(tls=mode, certs=sandbox_certs) for mode in modes}
    started = {mode: context.__enter__() for mode, context in running.items()}
    yield started
    for context in running.values():
        context.__exit__(None, None, None)


def _get(hub: tether.Hub) -> httpx2.Response:
    with hub.client("secure") as client:
        return client.get("/v1/customers?limit=1")


async def _aget(hub: tether.Hub) -> httpx2.Response:
    async with hub.async_client("secure") as client:
        return await client.get("/v1/customers?limit=1")


def test_valid_certificate_from_the_configured_ca_bundle_is_trusted(
    servers: dict[TLSMode, SandboxServer], sandbox_certs: CertificateSet
) -> None:
    response = _get(_hub(servers["valid"], sandbox_certs.ca_cert))
    assert response.status_code == 200


async def test_valid_certificate_is_trusted_by_the_async_client(
    servers: dict[TLSMode, SandboxServer], sandbox_certs: CertificateSet
) -> None:
    response = await _aget(_hub(servers["valid"], sandbox_certs.ca_cert))
    assert response.status_code == 200


def test_certificate_signed_by_an_unknown_ca_is_untrusted(servers: dict[TLSMode, SandboxServer]) -> None:
    """Without the CA in the bundle, the valid certificate's issuer is unknown to this machine."""
    config = parse_config(f'[integrations.secure]\nbase_url = "{servers["valid"].url}"')
    with pytest.raises(tether.UntrustedCertificateError) as caught, tether.Hub(config).client("secure") as client:
        client.get("/health")
    assert not isinstance(caught.value, tether.SelfSignedCertificateError)
    assert "untrusted issuer" in caught.value.hint
    assert len(caught.value.attempts) == 1, "a refused certificate is not retried"


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_expired_certificate_names_the_date_it_expired(
    servers: dict[TLSMode, SandboxServer], sandbox_certs: CertificateSet, asynchronous: bool
) -> None:
    hub = _hub(servers["expired"], sandbox_certs.ca_cert)
    with pytest.raises(tether.CertificateExpiredError) as caught:
        await _aget(hub) if asynchronous else _get(hub)
    error = caught.value
    assert error.expired_on is not None
    assert datetime.date.fromisoformat(error.expired_on) < datetime.date.today()
    assert f"certificate expired on {error.expired_on}" in error.hint
    assert isinstance(error, httpx2.ConnectError), "still an httpx2.ConnectError for existing handlers"
    assert len(error.attempts) == 1


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_self_signed_certificate_is_reported_as_self_signed(
    servers: dict[TLSMode, SandboxServer], sandbox_certs: CertificateSet, asynchronous: bool
) -> None:
    hub = _hub(servers["self_signed"], sandbox_certs.ca_cert)
    with pytest.raises(tether.SelfSignedCertificateError) as caught:
        await _aget(hub) if asynchronous else _get(hub)
    assert "self-signed" in caught.value.hint


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_certificate_for_another_name_is_a_hostname_mismatch(
    servers: dict[TLSMode, SandboxServer], sandbox_certs: CertificateSet, asynchronous: bool
) -> None:
    hub = _hub(servers["wrong_host"], sandbox_certs.ca_cert)
    with pytest.raises(tether.HostnameMismatchError) as caught:
        await _aget(hub) if asynchronous else _get(hub)
    assert "name mismatch" in caught.value.hint
    assert "127.0.0.1" in caught.value.hint
