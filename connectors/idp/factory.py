"""Build the configured identity provider from settings (``TENURE_IDP__KIND`` = scim | okta | ldap)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.protocols import IdentityProvider

if TYPE_CHECKING:
    from tenure.settings import IdPSettings

__all__ = ["build_identity_provider"]


def build_identity_provider(settings: IdPSettings) -> IdentityProvider:
    """The connector for ``settings.kind``; vendor modules are imported only when chosen."""
    if settings.kind == "scim":
        from connectors.idp.scim import SCIMIdentityProvider

        return SCIMIdentityProvider.from_settings(settings)
    if settings.kind == "okta":
        from connectors.idp.okta import OktaIdentityProvider

        return OktaIdentityProvider.from_settings(settings)
    if settings.kind == "ldap":
        from connectors.idp.ldap import LDAPIdentityProvider

        return LDAPIdentityProvider.from_settings(settings)
    raise ValueError(f"unknown identity provider kind: {settings.kind!r}")
