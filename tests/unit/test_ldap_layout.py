"""Active Directory's entry layout and logon-name rules, without a server (the real DC is in
tests/contract/test_idp_ad.py)."""

from __future__ import annotations

import uuid

import ldap3
import pytest
from pydantic import SecretStr

from connectors.idp.ldap import entry_to_account, modify_changes, new_user_attributes
from connectors.idp.ldap_layout import (
    ACTIVE_DIRECTORY,
    OPENLDAP,
    ad_password_value,
    dns_domain,
    id_filter_value,
    id_text,
    random_ad_password,
    sam_account_name_candidates,
    sam_account_name_problem,
)
from models.domain import AccountAttributes
from tenure.compose import build_identity_provider
from tenure.settings import IdPSettings

BASE = "DC=corp,DC=example,DC=com"
GUID = uuid.UUID("7262dfcf-2770-4f7f-9a65-67edbc24180d")


def test_object_guid_is_shown_and_searched_little_endian() -> None:
    """objectGUID's 16 bytes read as AD prints them; the filter escapes the same bytes one by one."""
    assert id_text(ACTIVE_DIRECTORY, GUID.bytes_le) == str(GUID)
    assert id_filter_value(ACTIVE_DIRECTORY, str(GUID)) == "".join(f"\\{b:02x}" for b in GUID.bytes_le)
    assert id_filter_value(ACTIVE_DIRECTORY, "not-a-guid") is None
    assert id_text(OPENLDAP, "1b4e28ba-2fa1-11d2-883f-0016d3cca427") == "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    assert id_filter_value(OPENLDAP, "a*") == "a\\2a"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("ada.lovelace", None),
        ("a" * 20, None),
        ("a" * 21, "longer than 20"),
        ('o"brien', "contains"),
        ("a/b", "contains"),
        ("tab\there", "control"),
        ("...", "empty"),
        ("", "empty"),
        ("desk$", "computer"),
    ],
)
def test_sam_account_name_rules(name: str, problem: str | None) -> None:
    """The documented sAMAccountName rules: 20 characters at most, none of the forbidden ones."""
    found = sam_account_name_problem(name)
    assert found is None if problem is None else (found is not None and problem in found)


def test_sam_account_name_candidates() -> None:
    """The UPN's local part when valid as it stands; otherwise (and as the fallback) a derived valid name that
    differs for UPNs that clean up alike."""
    assert sam_account_name_candidates("kim@example.com")[0] == "kim"
    plain, derived = sam_account_name_candidates('o"brien\\x@example.com')
    assert plain is None and derived.startswith("obrienx-") and sam_account_name_problem(derived) is None
    assert sam_account_name_candidates("o*")[1] != sam_account_name_candidates("o*@example.com")[1]
    long_name = "alexandria.papadopoulou@example.com"
    plain, derived = sam_account_name_candidates(long_name)
    assert plain is None and len(derived) == 20 and sam_account_name_problem(derived) is None


def test_unicode_pwd_is_quoted_utf16le() -> None:
    """unicodePwd carries the password in double quotes, UTF-16-LE (MS-ADTS 3.1.1.3.1.5.1)."""
    assert ad_password_value("Pa55!") == '"Pa55!"'.encode("utf-16-le")
    first, second = random_ad_password(), random_ad_password()
    assert first != second and len(first) >= 30
    assert (
        any(c.isupper() for c in first)
        and any(c.islower() for c in first)
        and any(c.isdigit() for c in first)
    )


def test_dns_domain_from_base_dn() -> None:
    assert dns_domain(BASE) == "corp.example.com"
    assert dns_domain(f"OU=Staff,{BASE}") == "corp.example.com"


def test_ad_attributes_mapping() -> None:
    """AD writes employeeID and department, keeps cn for the RDN (no display-name copy, no sn fallback)."""
    attrs = AccountAttributes(
        user_name="ada@corp.example.com",
        employee_id="E1",
        given_name="Ada",
        department="R&D",
        display_name="Ada L.",
    )
    assert new_user_attributes(attrs, manager_dn=None, layout=ACTIVE_DIRECTORY) == {
        "userPrincipalName": ["ada@corp.example.com"],
        "employeeID": ["E1"],
        "givenName": ["Ada"],
        "displayName": ["Ada L."],
        "department": ["R&D"],
    }
    mods = modify_changes(
        {"display_name": "Ada", "family_name": None},
        manager_dn=None,
        user_name="ada",
        layout=ACTIVE_DIRECTORY,
    )
    assert mods == {"displayName": [(ldap3.MODIFY_REPLACE, ["Ada"])], "sn": [(ldap3.MODIFY_REPLACE, [])]}


def test_ad_entry_to_account() -> None:
    """An AD entry: UPN as user name (sAMAccountName when it has none), employeeID, department, 514 disabled."""
    attributes = {
        "objectGUID": [str(GUID)],
        "userPrincipalName": ["ada@corp.example.com"],
        "sAMAccountName": ["ada"],
        "employeeID": ["E1"],
        "department": ["R&D"],
        "cn": ["ada@corp.example.com"],
        "userAccountControl": ["514"],
    }
    common = {
        "id_attribute": "objectGUID",
        "disabled_base": "",
        "method": "ad_uac",
        "layout": ACTIVE_DIRECTORY,
    }
    account = entry_to_account(f"CN=ada,OU=people,{BASE}", attributes, **common)  # type: ignore[arg-type]
    assert (account.id, account.user_name, account.employee_id) == (str(GUID), "ada@corp.example.com", "E1")
    assert account.department == "R&D" and account.active is False and account.display_name is None
    del attributes["userPrincipalName"]
    assert entry_to_account(f"CN=ada,OU=people,{BASE}", attributes, **common).user_name == "ada"  # type: ignore[arg-type]


def test_layout_overrides_are_checked() -> None:
    """Only AD's two logon names can key AD users; OpenLDAP users are keyed by their uid RDN."""
    assert ACTIVE_DIRECTORY.with_overrides(user_name_attribute="sAMAccountName").user_name_attribute == (
        "sAMAccountName"
    )
    with pytest.raises(ValueError, match="user_name_attribute"):
        ACTIVE_DIRECTORY.with_overrides(user_name_attribute="mail")
    with pytest.raises(ValueError, match="user_name_attribute"):
        OPENLDAP.with_overrides(user_name_attribute="cn")


def test_compose_maps_the_ad_settings() -> None:
    """TENURE_IDP__DEACTIVATION_METHOD=ad_uac selects the AD layout; the attribute settings reach the
    connector; unset, they are the directory's defaults."""
    settings = IdPSettings(
        kind="ldap",
        base_url="ldaps://dc1.corp.example.com",
        bind_dn=f"CN=svc-tenure,OU=Service,{BASE}",
        password=SecretStr("x"),
        base_dn=BASE,
        deactivation_method="ad_uac",
    )
    idp = build_identity_provider(settings)
    assert (idp.layout.kind, idp.id_attribute, idp.layout.employee_id_attribute) == (
        "ad",
        "objectGUID",
        "employeeID",
    )  # type: ignore[attr-defined]
    assert idp.layout.user_name_attribute == "userPrincipalName" and idp.upn_suffix == "corp.example.com"  # type: ignore[attr-defined]
    tuned = build_identity_provider(
        settings.model_copy(
            update={
                "employee_id_attribute": "employeeNumber",
                "user_name_attribute": "sAMAccountName",
                "upn_suffix": "example.com",
            }
        )
    )
    assert tuned.layout.employee_id_attribute == "employeeNumber"  # type: ignore[attr-defined]
    assert tuned.layout.user_name_attribute == "sAMAccountName" and tuned.upn_suffix == "example.com"  # type: ignore[attr-defined]
    plain = build_identity_provider(settings.model_copy(update={"deactivation_method": "move"}))
    assert (plain.layout.kind, plain.id_attribute) == ("rfc", "entryUUID")  # type: ignore[attr-defined]
