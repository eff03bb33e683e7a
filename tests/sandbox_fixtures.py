"""Pytest fixtures around :mod:`tether.sandbox`.

Use them from a test module with ``pytest_plugins = ["sandbox_fixtures"]``. The ``sandbox`` server is
shared by the tests of a module, so give fault counters a unique name with ``sandbox_key``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx2
import pytest

from tether.sandbox import SANDBOX_API_KEY, CertificateSet, SandboxServer, make_certificates, running_sandbox


@pytest.fixture(scope="session")
def sandbox_certs(tmp_path_factory: pytest.TempPathFactory) -> CertificateSet:
    """A CA and one server certificate of each kind, generated once per session."""
    return make_certificates(tmp_path_factory.mktemp("sandbox-certs"))


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    """A plain-HTTP sandbox on a free loopback port, shared by the module's tests."""
    with running_sandbox() as server:
        yield server


@pytest.fixture
def sandbox_key(request: pytest.FixtureRequest) -> str:
    """A fault-counter key no other test uses."""
    return f"{request.node.name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def sandbox_client(sandbox: SandboxServer) -> Iterator[httpx2.Client]:
    """A client for ``sandbox`` that sends the sandbox API key."""
    with httpx2.Client(base_url=sandbox.url, headers={"X-API-Key": SANDBOX_API_KEY}) as client:
        yield client
