"""Authentication flows (httpx2 ``Auth``)."""

from tether.auth.static import ApiKeyAuth, BearerAuth, auth_from_config, credential_source

__all__ = ["ApiKeyAuth", "BearerAuth", "auth_from_config", "credential_source"]
