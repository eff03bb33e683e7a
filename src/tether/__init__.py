"""tether: production-grade third-party API integrations, declared once in ``tether.toml``.

Quick tour::

    hub = tether.Hub.from_config()
    with hub.client("stripe") as stripe:
        customer = stripe.get("/v1/customers/cus_123").raise_for_status().json()
"""

from tether._version import __version__
from tether.client.response import TetherResponse
from tether.errors import (
    APIStatusError,
    Attempt,
    AuthenticationError,
    BadRequestError,
    CallError,
    CertificateExpiredError,
    CircuitOpenError,
    ConfigError,
    ConflictError,
    ConnectionFailedError,
    ConnectionLostError,
    ConnectTimeoutError,
    DeadlineExceededError,
    HostnameMismatchError,
    NotFoundError,
    NotJSONError,
    PermissionDeniedError,
    RateLimitError,
    ReadTimeoutError,
    RequestTimeoutError,
    ResponseFormatError,
    SelfSignedCertificateError,
    ServerError,
    TetherError,
    ThrottledError,
    TLSError,
    TruncatedJSONError,
    UnexpectedContentTypeError,
    UnprocessableEntityError,
    UntrustedCertificateError,
)
from tether.hub import Hub

__all__ = [
    "APIStatusError",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
    "CallError",
    "CertificateExpiredError",
    "CircuitOpenError",
    "ConfigError",
    "ConflictError",
    "ConnectTimeoutError",
    "ConnectionFailedError",
    "ConnectionLostError",
    "DeadlineExceededError",
    "HostnameMismatchError",
    "Hub",
    "NotFoundError",
    "NotJSONError",
    "PermissionDeniedError",
    "RateLimitError",
    "ReadTimeoutError",
    "RequestTimeoutError",
    "ResponseFormatError",
    "SelfSignedCertificateError",
    "ServerError",
    "TLSError",
    "TetherError",
    "TetherResponse",
    "ThrottledError",
    "TruncatedJSONError",
    "UnexpectedContentTypeError",
    "UnprocessableEntityError",
    "UntrustedCertificateError",
    "__version__",
]
