"""``tether.toml``: the schema and the loader."""

from tether.config.loader import find_config, load_config, parse_config
from tether.config.models import (
    ApiKeyAuthConfig,
    AuthConfig,
    BasicAuthConfig,
    BearerAuthConfig,
    HealthCheck,
    IntegrationConfig,
    RetryConfig,
    TetherConfig,
    TimeoutConfig,
)
from tether.config.secrets import Secret

__all__ = [
    "ApiKeyAuthConfig",
    "AuthConfig",
    "BasicAuthConfig",
    "BearerAuthConfig",
    "HealthCheck",
    "IntegrationConfig",
    "RetryConfig",
    "Secret",
    "TetherConfig",
    "TimeoutConfig",
    "find_config",
    "load_config",
    "parse_config",
]
