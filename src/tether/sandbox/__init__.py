"""A local fake third-party API, with faults on demand, for the demo and the tests.

Start one with :func:`running_sandbox` (background thread, free port) or :func:`serve` (foreground,
for ``tether sandbox``); build just the ASGI app with :func:`create_app`. The endpoints are listed in
:mod:`tether.sandbox.app`, the faults in :mod:`tether.sandbox.faults`, and the TLS certificate kinds in
:mod:`tether.sandbox.tls`.
"""

from tether.sandbox.app import SANDBOX_API_KEY, SANDBOX_BEARER_TOKEN, create_app
from tether.sandbox.faults import RecordedRequest, RequestLog
from tether.sandbox.server import SandboxServer, TLSMode, running_sandbox, serve
from tether.sandbox.tls import CertificateKind, CertificatePair, CertificateSet, make_certificates

__all__ = [
    "SANDBOX_API_KEY",
    "SANDBOX_BEARER_TOKEN",
    "CertificateKind",
    "CertificatePair",
    "CertificateSet",
    "RecordedRequest",
    "RequestLog",
    "SandboxServer",
    "TLSMode",
    "create_app",
    "make_certificates",
    "running_sandbox",
    "serve",
]
