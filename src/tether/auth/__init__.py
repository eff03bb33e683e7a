"""Authentication flows (httpx2 ``Auth``): static credentials, self-signed JWTs, OAuth 2.0 tokens."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx2

from tether.auth.static import ApiKeyAuth, BearerAuth, auth_from_config, credential_source
from tether.config.models import IntegrationConfig, JwtAuthConfig, OAuth2AuthConfig
from tether.store import Store

__all__ = ["ApiKeyAuth", "BearerAuth", "auth_for", "auth_from_config", "credential_source"]


def auth_for(
    name: str,
    config: IntegrationConfig,
    *,
    base_dir: Path,
    store: Callable[[], Store],
    wall: Callable[[], float],
    sleep: Callable[[float], None],
    async_sleep: Callable[[float], Awaitable[None]],
) -> httpx2.Auth | None:
    """The ``Auth`` flow of integration ``name``. ``store`` opens the store, only for OAuth 2.0 integrations."""
    auth = config.auth
    if isinstance(auth, JwtAuthConfig):
        from tether.auth.jwt import JwtSigner, SelfSignedJwtAuth

        return SelfSignedJwtAuth(JwtSigner(auth, wall=wall))
    if isinstance(auth, OAuth2AuthConfig):
        from tether.auth.oauth2 import OAuth2Auth, TokenManager
        from tether.auth.token_endpoint import TokenEndpoint
        from tether.auth.tokens import TokenStore
        from tether.client.build import ssl_context

        endpoint = TokenEndpoint(
            name,
            auth,
            verify=ssl_context(config, base_dir),
            timeout=min(config.timeout.total, 30.0),
            wall=wall,
            sleep=sleep,
            async_sleep=async_sleep,
        )
        manager = TokenManager(
            name, endpoint, TokenStore(store()), renew_before=auth.renew_before, wall=wall, async_sleep=async_sleep
        )
        return OAuth2Auth(manager)
    return auth_from_config(auth)
