"""Pytest fixtures around the loopback OAuth 2.0 authorization server in :mod:`oauth_server`.

Registered for every test module by ``conftest.py``. ``oauth_server`` is a fresh, running server per test (it
starts in a few milliseconds); the signing keys its JWT-bearer clients use are generated once per session.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from oauth_server import OAuthServer, SigningKeys


@pytest.fixture(scope="session")
def oauth_signing_keys() -> SigningKeys:
    """An RSA and an EC private key (PEM), shared by every ``oauth_server`` of the session."""
    return SigningKeys.generate()


@pytest.fixture
def oauth_server(oauth_signing_keys: SigningKeys) -> Iterator[OAuthServer]:
    """A running OAuth 2.0 authorization server on 127.0.0.1; fails the test if it raised internally."""
    with OAuthServer(keys=oauth_signing_keys) as server:
        yield server
    assert not server.errors, "the OAuth server raised:\n" + "\n".join(server.errors)
