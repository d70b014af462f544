"""Pure LDAP mapping (entry ↔ Account, filters, DNs, timestamps, errors) without a server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import ldap3
import pytest
from ldap3.core import exceptions as lx
from pydantic import SecretStr

from connectors.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRecordError,
    NetworkError,
    NotFoundError,
    PermanentAPIError,
    RetryableAPIError,
)
from connectors.idp.ldap import (
    ACCOUNTDISABLE,
    LDAPIdentityProvider,
    canonical_dn,
    entry_to_account,
    first_rdn_value,
    is_under,
    modify_changes,
    new_user_attributes,
    parse_ldap_timestamp,
    scrambled_password,
    translate_error,
    uac_with_disabled,
    user_filter,
    user_rdn,
)
from models.domain import AccountAttributes
from tenure.compose import build_identity_provider
from tenure.settings import IdPSettings

BASE = "dc=tenure,dc=test"
DISABLED = f"ou=disabled,{BASE}"
GROUPS = f"ou=groups,{BASE}"


def _entry(**overrides: object) -> dict[str, object]:
    attrs: dict[str, object] = {
        "entryUUID": ["1b4e28ba-2fa1-11d2-883f-0016d3cca427"],
        "uid": ["ada@example.com"],
        "employeeNumber": ["E100"],
        "givenName": ["Ada"],
        "sn": ["Lovelace"],
        "cn": ["Ada Lovelace"],
        "displayName": ["Ada L."],
        "mail": ["ada@example.com"],
        "title": ["Engineer"],
        "departmentNumber": ["R&D"],
        "memberOf": [
            f"cn=engineering,{GROUPS}",
            f"cn=all-staff,{GROUPS}",
            "cn=elsewhere,ou=other,dc=tenure,dc=test",
        ],
    }
    attrs.update(overrides)
    return attrs


# ---------------------------------------------------------------- filters and DNs


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('o"brien\\x@example.com', '(&(objectClass=inetOrgPerson)(uid=o"brien\\5cx@example.com))'),
        ("*)(uid=*", "(&(objectClass=inetOrgPerson)(uid=\\2a\\29\\28uid=\\2a))"),
        ("nul\x00byte", "(&(objectClass=inetOrgPerson)(uid=nul\\00byte))"),
    ],
    ids=["quote-backslash", "injection", "nul"],
)
def test_user_filter_escapes_rfc4515(value: str, expected: str) -> None:
    """Filter values are escaped per RFC 4515 §3: no metacharacter reaches the server raw."""
    assert user_filter("uid", value) == expected


def test_user_rdn_escapes_rfc4514() -> None:
    """RDN values escape , + " \\ < > ; = per RFC 4514 §2.4."""
    assert user_rdn('o"brien\\x@example.com') == 'uid=o\\"brien\\\\x@example.com'
    assert user_rdn("a,b+c=d") == "uid=a\\,b\\+c\\=d"


def test_canonical_dn_treats_escape_spellings_and_case_alike() -> None:
    """The hex-escaped form a server returns equals our backslash-escaped, differently cased form."""
    ours = user_rdn('O"Brien\\x@example.com') + f",ou=People,{BASE}"
    servers = "uid=o\\22brien\\5Cx@example.com,ou=people,dc=tenure,dc=test"
    assert canonical_dn(ours) == canonical_dn(servers)
    assert canonical_dn(servers) != canonical_dn(f"uid=obrien@example.com,ou=people,{BASE}")


def test_canonical_dn_decodes_utf8_hex_escapes() -> None:
    """Multi-byte UTF-8 hex escapes decode to the character (RFC 4514 §3)."""
    assert canonical_dn("cn=J\\C3\\BCrgen,dc=x") == canonical_dn("cn=jürgen,dc=x")


def test_is_under() -> None:
    """is_under is strict, suffix-based and not fooled by look-alike values."""
    assert is_under(f"uid=a,{DISABLED}", DISABLED)
    assert is_under(f"uid=a,OU=Disabled,{BASE}", DISABLED)
    assert not is_under(DISABLED, DISABLED)
    assert not is_under(f"uid=a,ou=people,{BASE}", DISABLED)
    look_alike = user_rdn(DISABLED) + f",ou=people,{BASE}"  # uid=ou\=disabled\,dc\=tenure...
    assert not is_under(look_alike, DISABLED)


def test_first_rdn_value_unescapes() -> None:
    """The group name is the first RDN's value with escapes decoded."""
    assert first_rdn_value(f"cn=R\\26D\\2C west,{GROUPS}") == "R&D, west"


# ---------------------------------------------------------------- Account → entry


def test_new_user_attributes_maps_every_field() -> None:
    """A joiner's attributes map onto inetOrgPerson names; the manager is a DN."""
    attrs = AccountAttributes(
        user_name="ada@example.com",
        employee_id="E100",
        given_name="Ada",
        family_name="Lovelace",
        display_name="Ada L.",
        email="ada@example.com",
        title="Engineer",
        department="R&D",
        manager_id="E1",
    )
    assert new_user_attributes(attrs, manager_dn=f"uid=boss,ou=people,{BASE}") == {
        "uid": ["ada@example.com"],
        "employeeNumber": ["E100"],
        "givenName": ["Ada"],
        "sn": ["Lovelace"],
        "cn": ["Ada L."],
        "displayName": ["Ada L."],
        "mail": ["ada@example.com"],
        "title": ["Engineer"],
        "departmentNumber": ["R&D"],
        "manager": [f"uid=boss,ou=people,{BASE}"],
    }


def test_new_user_attributes_fills_mandatory_sn_and_cn() -> None:
    """inetOrgPerson needs sn and cn: they fall back to the names there are; empty fields are left out."""
    bare = new_user_attributes(AccountAttributes(user_name="x1", employee_id="E1"), manager_dn=None)
    assert bare == {"uid": ["x1"], "employeeNumber": ["E1"], "sn": ["x1"], "cn": ["x1"]}
    named = new_user_attributes(
        AccountAttributes(user_name="x1", employee_id="E1", given_name="Grace", family_name="Hopper"),
        manager_dn=None,
    )
    assert named["cn"] == ["Grace Hopper"] and "displayName" not in named


def test_modify_changes_replaces_only_changed_attributes() -> None:
    """Each change is one MODIFY_REPLACE; untouched attributes are absent; None deletes."""
    mods = modify_changes({"title": "CTO", "email": None}, manager_dn=None, user_name="ada")
    assert mods == {"title": [(ldap3.MODIFY_REPLACE, ["CTO"])], "mail": [(ldap3.MODIFY_REPLACE, [])]}


def test_modify_changes_special_fields() -> None:
    """display_name also rewrites cn, a cleared sn falls back, manager is the resolved DN, user_name is a
    rename (not a modify) and active is not an attribute."""
    mods = modify_changes(
        {"display_name": "Ada", "family_name": None, "manager_id": "E1", "user_name": "new", "active": False},
        manager_dn="uid=boss,ou=people,dc=x",
        user_name="new",
    )
    assert mods == {
        "displayName": [(ldap3.MODIFY_REPLACE, ["Ada"])],
        "cn": [(ldap3.MODIFY_REPLACE, ["Ada"])],
        "sn": [(ldap3.MODIFY_REPLACE, ["new"])],
        "manager": [(ldap3.MODIFY_REPLACE, ["uid=boss,ou=people,dc=x"])],
    }
    assert modify_changes({"manager_id": None}, manager_dn=None, user_name="a") == {
        "manager": [(ldap3.MODIFY_REPLACE, [])]
    }


def test_modify_changes_rejects_unknown_attribute() -> None:
    """A change to an attribute Tenure does not manage is an InvalidRecordError, not a silent write."""
    with pytest.raises(InvalidRecordError, match="userPassword"):
        modify_changes({"userPassword": "x"}, manager_dn=None, user_name="a")


# ---------------------------------------------------------------- entry → Account


def test_entry_to_account_maps_every_field() -> None:
    """Every inetOrgPerson attribute lands in its Account field; groups come from memberOf in the groups OU."""
    account = entry_to_account(
        f"uid=ada@example.com,ou=people,{BASE}",
        _entry(),
        id_attribute="entryUUID",
        disabled_base=DISABLED,
        groups_base=GROUPS,
        manager_id="E1",
    )
    assert account.model_dump() == {
        "id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "user_name": "ada@example.com",
        "employee_id": "E100",
        "given_name": "Ada",
        "family_name": "Lovelace",
        "display_name": "Ada L.",
        "email": "ada@example.com",
        "title": "Engineer",
        "department": "R&D",
        "manager_id": "E1",
        "active": True,
        "last_sign_in": None,
        "groups": frozenset({"engineering", "all-staff"}),
    }


def test_entry_to_account_under_disabled_ou_is_inactive() -> None:
    """``active`` is false exactly when the entry sits under the disabled OU."""
    account = entry_to_account(
        f"uid=ada,{DISABLED}", _entry(), id_attribute="entryUUID", disabled_base=DISABLED
    )
    assert account.active is False


def test_entry_to_account_accepts_scalars_and_missing_optionals() -> None:
    """Scalar values (ldap3 with a schema) and absent optional attributes both map; cn stands in for displayName."""
    attrs = {"entryUUID": "u-1", "UID": "bob", "employeenumber": "E2", "cn": "Bob B", "sn": "B", "mail": []}
    account = entry_to_account(
        f"uid=bob,ou=people,{BASE}", attrs, id_attribute="entryUUID", disabled_base=DISABLED
    )
    assert (account.id, account.user_name, account.employee_id) == ("u-1", "bob", "E2")
    assert account.display_name == "Bob B" and account.email is None and account.groups == frozenset()


def test_entry_to_account_requires_identity_attributes() -> None:
    """An entry without an id or uid cannot be an account."""
    for missing, attribute in (({"uid": []}, "uid"), ({"entryUUID": []}, "entryUUID")):
        with pytest.raises(InvalidRecordError, match=attribute):
            entry_to_account(
                f"uid=a,{DISABLED}", _entry(**missing), id_attribute="entryUUID", disabled_base=DISABLED
            )


def test_entry_without_employee_number_is_an_account_without_employee_id() -> None:
    """An entry made by hand (no employeeNumber) is an account with an empty employee id: an orphan for the
    access review, never a match for an HR record."""
    account = entry_to_account(
        f"uid=a,{DISABLED}", _entry(employeeNumber=[]), id_attribute="entryUUID", disabled_base=DISABLED
    )
    assert account.employee_id == "" and account.user_name == "ada@example.com"


def test_entry_to_account_ad_uac() -> None:
    """With the ad_uac method, ACCOUNTDISABLE in userAccountControl decides ``active``, not the OU."""
    common = {"id_attribute": "entryUUID", "disabled_base": DISABLED, "method": "ad_uac"}
    dn = f"uid=ada,ou=people,{BASE}"
    assert entry_to_account(dn, _entry(userAccountControl=["514"]), **common).active is False  # type: ignore[arg-type]
    assert entry_to_account(dn, _entry(userAccountControl=["512"]), **common).active is True  # type: ignore[arg-type]


def test_entry_to_account_last_sign_in_takes_latest() -> None:
    """last_sign_in is the later of authTimestamp and lastLogonTimestamp; none gives None."""
    attrs = _entry(authTimestamp=["20240102030405Z"], lastLogonTimestamp=["133485408000000000"])
    account = entry_to_account(
        f"uid=a,ou=people,{BASE}", attrs, id_attribute="entryUUID", disabled_base=DISABLED
    )
    assert account.last_sign_in == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20240131120000Z", datetime(2024, 1, 31, 12, 0, 0, tzinfo=UTC)),
        ("20240131120000.5Z", datetime(2024, 1, 31, 12, 0, 0, 500000, tzinfo=UTC)),
        ("20240131140000+0200", datetime(2024, 1, 31, 12, 0, 0, tzinfo=UTC)),
        ("133511328000000000", datetime(2024, 1, 31, 0, 0, 0, tzinfo=UTC)),
        ("0", None),
        ("not a time", None),
        (None, None),
    ],
    ids=["generalized", "fraction", "offset", "ad-filetime", "ad-never", "garbage", "none"],
)
def test_parse_ldap_timestamp(value: str | None, expected: datetime | None) -> None:
    """GeneralizedTime (RFC 4517 §3.3.13) and AD FILETIME parse to aware UTC datetimes."""
    assert parse_ldap_timestamp(value) == expected


# ---------------------------------------------------------------- deactivation helpers


def test_uac_with_disabled_flips_only_accountdisable() -> None:
    """Setting/clearing ACCOUNTDISABLE keeps every other userAccountControl flag."""
    assert ACCOUNTDISABLE == 0x2
    assert uac_with_disabled(512, True) == 514
    assert uac_with_disabled(514, False) == 512
    assert uac_with_disabled(0x10200, True) == 0x10202  # DONT_EXPIRE_PASSWORD kept
    assert uac_with_disabled(None, True) == 514
    assert uac_with_disabled(514, True) == 514


def test_scrambled_password_is_random_salted_hash() -> None:
    """Scrambled passwords are salted SHA hashes, different every time."""
    first, second = scrambled_password(), scrambled_password()
    assert first.lower().startswith("{ssha}") and second.lower().startswith("{ssha}")
    assert first != second


# ---------------------------------------------------------------- errors, settings, secrets


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (lx.LDAPSocketOpenError("refused"), NetworkError),
        (lx.LDAPSessionTerminatedByServerError("gone"), NetworkError),
        (lx.LDAPResponseTimeoutError("slow"), NetworkError),
        (lx.LDAPOperationResult(result=49, description="invalidCredentials"), AuthenticationError),
        (lx.LDAPOperationResult(result=50, description="insufficientAccessRights"), AuthenticationError),
        (lx.LDAPOperationResult(result=68, description="entryAlreadyExists"), ConflictError),
        (lx.LDAPOperationResult(result=32, description="noSuchObject"), NotFoundError),
        (lx.LDAPOperationResult(result=51, description="busy"), RetryableAPIError),
        (lx.LDAPOperationResult(result=52, description="unavailable"), RetryableAPIError),
        (lx.LDAPOperationResult(result=65, description="objectClassViolation"), PermanentAPIError),
    ],
    ids=["refused", "terminated", "timeout", "49", "50", "68", "32", "51", "52", "65"],
)
def test_translate_error(exc: Exception, expected: type) -> None:
    """ldap3 failures map onto the connector error tree by what the caller should do."""
    translated = translate_error(exc, "op")
    assert type(translated) is expected
    assert translated.source == "ldap"


def test_build_and_repr_hide_password() -> None:
    """The composition root resolves the OUs against base_dn; the bind password is in no repr."""
    settings = IdPSettings(
        kind="ldap",
        base_url="ldap://127.0.0.1:389/",
        bind_dn="cn=admin,dc=tenure,dc=test",
        password=SecretStr("hunter2-very-secret"),
        base_dn=BASE,
        disabled_ou="ou=leavers",
        allow_delete=True,
    )
    idp = build_identity_provider(settings)
    assert (idp.users_base, idp.groups_base, idp.disabled_base) == (
        f"ou=people,{BASE}",
        f"ou=groups,{BASE}",
        f"ou=leavers,{BASE}",
    )
    assert idp.allow_delete is True and idp.deactivation_method == "move"
    assert "hunter2" not in repr(idp) and "hunter2" not in str(vars(idp))


def test_build_requires_base_dn() -> None:
    """An LDAP IdP without base DN is a configuration error caught at construction."""
    with pytest.raises(ValueError, match="BASE_DN"):
        build_identity_provider(IdPSettings(kind="ldap", bind_dn="cn=admin,dc=x"))


def test_full_dn_ous_are_kept() -> None:
    """An OU given as a full DN below base_dn is used as is."""
    idp = LDAPIdentityProvider(
        "ldap://127.0.0.1", bind_dn="cn=a", password="p", base_dn=BASE, users_ou=f"ou=staff,ou=people,{BASE}"
    )
    assert idp.users_base == f"ou=staff,ou=people,{BASE}"


def test_unknown_deactivation_method_rejected() -> None:
    """Only the documented deactivation methods are accepted."""
    method: Any = "delete"
    with pytest.raises(ValueError, match="deactivation_method"):
        LDAPIdentityProvider(
            "ldap://127.0.0.1", bind_dn="cn=a", password="p", base_dn=BASE, deactivation_method=method
        )
