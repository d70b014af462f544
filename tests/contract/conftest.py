"""LDAP fixtures for the contract tests: a connector per test on the module's slapd (the ``slapd`` fixture
of tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from connectors.idp.ldap import LDAPIdentityProvider
from tests.support.slapd import SlapdHandle


@pytest.fixture
async def ldap_idp(slapd: SlapdHandle) -> AsyncIterator[LDAPIdentityProvider]:
    """A connector on the module's slapd; every account and group is deleted after the test."""
    idp = LDAPIdentityProvider(
        slapd.url,
        bind_dn=slapd.admin_dn,
        password=slapd.admin_password,
        base_dn=slapd.base_dn,
        allow_delete=True,
        timeout_seconds=5,
    )
    try:
        yield idp
    finally:
        await idp.aclose()
        slapd.clear()
