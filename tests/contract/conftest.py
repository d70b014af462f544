"""LDAP fixtures for the contract tests: one throwaway slapd per module, a connector per test.

(Other peers' fixtures live in their own modules; keep this file to LDAP.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from connectors.idp.ldap import LDAPIdentityProvider
from tests.support.slapd import SlapdHandle, start_slapd


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdHandle]:
    """A real slapd on 127.0.0.1 for the module, stopped by PID at teardown."""
    handle = start_slapd(tmp_path_factory.mktemp("slapd"))
    try:
        yield handle
    finally:
        handle.stop()


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
