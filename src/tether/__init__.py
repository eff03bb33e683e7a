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
    AuthError,
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
    GrantRevokedError,
    HostnameMismatchError,
    LoginRequiredError,
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
    TokenEndpointError,
    TruncatedJSONError,
    UnexpectedContentTypeError,
    UnprocessableEntityError,
    UntrustedCertificateError,
)
from tether.hub import Hub

__all__ = [
    "APIStatusError",
    "Attempt",
    "AuthError",
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
    "GrantRevokedError",
    "HostnameMismatchError",
    "Hub",
    "LoginRequiredError",
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
    "TokenEndpointError",
    "TruncatedJSONError",
    "UnexpectedContentTypeError",
    "UnprocessableEntityError",
    "UntrustedCertificateError",
    "__version__",
]
